"""Grounding metrics over plain arrays: R@k at IoU m, and mIoU (docs/method.md section 1).

A query is a hit at ``(k, m)`` when any of its first ``k`` candidates (already ranked after NMS)
has float32 ``IoU >= m`` with the ground truth. With several ground-truth windows, a candidate's
IoU is its best IoU over them. ``mIoU`` is the mean IoU of the rank-1 candidate (0 for a query
with no candidate). Keys are ``"R{k}@{m}"`` (``"R1@0.5"``) and ``"mIoU"``, fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from g2l.ops.spans import F32, pairwise_iou


def metric_key(k: int, threshold: float) -> str:
    return f"R{k}@{threshold:g}"


def candidate_ious(candidates: np.ndarray, gt_windows: np.ndarray, max_rank: int) -> np.ndarray:
    """IoU ``(k,)`` of the first ``max_rank`` candidates ``(k, 2)`` with the best of ``gt_windows (g, 2)``."""
    top = np.asarray(candidates, dtype=F32).reshape(-1, 2)[:max_rank]
    gts = np.asarray(gt_windows, dtype=F32).reshape(-1, 2)
    if top.shape[0] == 0 or gts.shape[0] == 0:
        return np.zeros(top.shape[0], dtype=F32)
    return pairwise_iou(top, gts).max(axis=1)


def grounding_metrics(
    candidates: Sequence[np.ndarray],
    gt_windows: Sequence[np.ndarray],
    recall_at: Sequence[int] = (1, 5),
    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
) -> dict[str, float]:
    """R@k at every IoU threshold and mIoU over queries.

    ``candidates[q]`` is the ``(k, 2)`` ranked candidate spans of query q (seconds), and
    ``gt_windows[q]`` its ground truth, ``(2,)`` or ``(g, 2)``.
    """
    if len(candidates) != len(gt_windows):
        raise ValueError(f"got {len(candidates)} candidate lists for {len(gt_windows)} ground truths")
    max_rank = max(recall_at)
    thresholds = np.asarray(iou_thresholds, dtype=F32)
    hits = np.zeros((len(recall_at), len(thresholds)), dtype=np.int64)
    top1 = np.zeros(len(candidates), dtype=np.float64)
    for q, (cands, gts) in enumerate(zip(candidates, gt_windows)):
        ious = candidate_ious(cands, gts, max_rank)
        if ious.size:
            top1[q] = ious[0]
        for r, k in enumerate(recall_at):
            if ious[:k].size:
                hits[r] += (ious[:k, None] >= thresholds[None, :]).any(axis=0)
    num = max(len(candidates), 1)
    out = {
        metric_key(k, float(m)): float(hits[r, c]) / num
        for r, k in enumerate(recall_at)
        for c, m in enumerate(iou_thresholds)
    }
    out["mIoU"] = float(top1.sum()) / num
    out["num_queries"] = len(candidates)
    return out


def format_metrics_table(metrics: dict[str, float], recall_at: Sequence[int], iou_thresholds: Sequence[float]) -> str:
    """A small text table: one row per k, one column per IoU threshold, in percent, plus mIoU."""
    header = "        " + "".join(f"  IoU={m:<5g}" for m in iou_thresholds)
    rows = [header]
    for k in recall_at:
        cells = "".join(f"  {100 * metrics[metric_key(k, m)]:9.2f}" for m in iou_thresholds)
        rows.append(f"R@{k:<5d}{cells}")
    rows.append(f"mIoU    {100 * metrics['mIoU']:9.2f}    ({metrics.get('num_queries', 0)} queries)")
    return "\n".join(rows)
