"""Floors that a grounding model must beat, computed from annotations alone.

* **Prior only**: the single fixed moment, as fractions ``[a, b]`` of the video's duration, that
  maximises R1@0.5 on the training queries (ties: the higher mIoU), searched on a grid of step
  ``1 / grid``; on the test split every query gets ``[a D, b D]``. It knows where moments tend to
  be, nothing of the sentence or the video.
* **Random ranking**: every valid cell of the map gets an independent uniform score; candidates
  are ranked and NMS'd like a model's (the mean over ``repeats`` draws).
"""

from __future__ import annotations

import numpy as np

from g2l.data.records import Annotation
from g2l.eval.metrics import grounding_metrics
from g2l.ops.spans import F32, pooling_mask, ranked_candidates


def _normalised_windows(annotations: list[Annotation]) -> np.ndarray:
    return np.asarray([[a.windows_s[0][0] / a.duration_s, a.windows_s[0][1] / a.duration_s] for a in annotations])


def best_fixed_moment(train: list[Annotation], grid: int = 50, threshold: float = 0.5) -> tuple[float, float]:
    """``(a, b)``, fractions of the duration, maximising R1@threshold (then mIoU) on ``train``."""
    gts = _normalised_windows(train)  # (q 2)
    ticks = np.arange(grid + 1) / grid
    starts, ends = np.meshgrid(ticks, ticks, indexing="ij")
    keep = starts < ends
    cands = np.stack([starts[keep], ends[keep]], axis=1)  # (k 2)
    recall, miou = np.empty(len(cands)), np.empty(len(cands))
    for chunk in np.array_split(np.arange(len(cands)), max(len(cands) // 64, 1)):  # bounded (k q) memory
        c = cands[chunk][:, None, :]
        inter = np.minimum(c[..., 1], gts[None, :, 1]) - np.maximum(c[..., 0], gts[None, :, 0])
        hull = np.maximum(c[..., 1], gts[None, :, 1]) - np.minimum(c[..., 0], gts[None, :, 0])
        iou = np.maximum(inter, 0) / hull  # (k q)
        recall[chunk], miou[chunk] = (iou >= threshold).mean(axis=1), iou.mean(axis=1)
    best = np.lexsort((-np.arange(len(cands)), miou, recall))[-1]  # max recall, then mIoU, then first
    return float(cands[best, 0]), float(cands[best, 1])


def prior_only_metrics(train: list[Annotation], test: list[Annotation], recall_at=(1, 5), iou_thresholds=(0.3, 0.5, 0.7)):
    a, b = best_fixed_moment(train)
    candidates = [np.asarray([[a * q.duration_s, b * q.duration_s]], dtype=F32) for q in test]
    metrics = grounding_metrics(candidates, [np.asarray(q.windows_s, F32) for q in test], recall_at, iou_thresholds)
    return {"moment": [a, b], **metrics}


def random_ranking_metrics(test: list[Annotation], *, num_clips: int, pooling_counts: list[int], nms_thresh: float,
                           recall_at=(1, 5), iou_thresholds=(0.3, 0.5, 0.7), repeats: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    mask = pooling_mask(num_clips, pooling_counts)
    gts = [np.asarray(q.windows_s, F32) for q in test]
    runs = []
    for _ in range(repeats):
        candidates = []
        for q in test:
            scores = np.where(mask, rng.random(mask.shape, dtype=np.float32) + F32(1e-3), 0).astype(F32)
            candidates.append(ranked_candidates(scores, q.duration_s, nms_thresh, max(recall_at), mask)[0])
        runs.append(grounding_metrics(candidates, gts, recall_at, iou_thresholds))
    out = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    out["num_queries"] = len(test)
    return out
