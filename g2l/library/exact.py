"""Exact search over stored moment embeddings: every moment of every video scored against the query
(two matrix products), then the best moments across the library, at most ``per_video`` of each
video, after NMS within each video as ``Grounder.ground`` does it.

This is the embedded backend behind ``VideoIndex.search``. Its interface is the one an approximate
or remote backend would implement: built from the shards' arrays, ``scores(s_c, s_u)`` gives one
float32 score per stored moment, and ``rank`` turns scores into hits. An approximate index (FAISS,
Milvus) would fetch candidates by one cosine and return exact ``scores`` for those alone.

Why the merge is exact: greedy NMS of one video takes its candidates best first and keeps one
unless it overlaps a kept one by more than the threshold; taking the candidates of all videos
best first and applying that rule per video keeps, in each video, exactly what ``rank_candidates``
keeps there, and in the order of their scores across videos. Ties keep the stored order (video by
video, each in ``ground``'s candidate order), as ``rank_candidates``'s stable sort does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from g2l.models.grounding import score_cells
from g2l.ops.spans import span_iou


@dataclass
class Block:
    """One shard's moments: ``cells_c, cells_u (k d)`` (float16 or float32, possibly memory-mapped),
    ``spans_s (k 2)`` float32 and ``video (k)`` int64 numbers of the videos across the library."""

    cells_c: np.ndarray
    cells_u: np.ndarray
    spans_s: np.ndarray
    video: np.ndarray


class ExactSearch:
    """All stored moments, scored exactly for each query."""

    def __init__(self, blocks: list[Block], *, gamma: float):
        self.blocks = blocks
        self.gamma = float(gamma)
        self.spans_s = (np.concatenate([b.spans_s for b in blocks]) if blocks
                        else np.zeros((0, 2), np.float32))  # (k 2)
        self.video = np.concatenate([b.video for b in blocks]) if blocks else np.zeros(0, np.int64)  # (k)

    def __len__(self) -> int:
        return len(self.video)

    @torch.inference_mode()
    def scores(self, s_c: np.ndarray, s_u: np.ndarray) -> np.ndarray:
        """One query's ``(d)`` sentence features -> float32 scores ``(k)`` of every stored moment
        (non-finite ones, from a crafted shard, become -inf: never ranked above a real one)."""
        contrast = torch.empty(len(self.video), dtype=torch.float32)  # (k)
        iou = torch.empty(len(self.video), dtype=torch.float32)  # (k)
        start = 0
        for block in self.blocks:
            end = start + len(block.video)
            if block.cells_c.dtype == np.float16:  # torch has float16 kernels; numpy only converts
                contrast[start:end] = torch.from_numpy(block.cells_c) @ torch.from_numpy(s_c.astype(np.float16))
                iou[start:end] = torch.from_numpy(block.cells_u) @ torch.from_numpy(s_u.astype(np.float16))
            else:
                contrast[start:end] = torch.from_numpy(np.asarray(block.cells_c) @ s_c.astype(np.float32))
                iou[start:end] = torch.from_numpy(np.asarray(block.cells_u) @ s_u.astype(np.float32))
            start = end
        scores = score_cells(contrast, iou, self.gamma)
        return torch.nan_to_num_(scores, nan=-torch.inf, posinf=-torch.inf, neginf=-torch.inf).numpy()

    def rank(self, scores: np.ndarray, *, top_k: int, per_video: int | None, nms_thresh: float) -> list[int]:
        """Indices of the best ``top_k`` moments, best first: greedy NMS within each video (IoU >
        ``nms_thresh`` suppressed, float32, as g2l/ops/spans.py) and at most ``per_video`` a video."""
        kept: list[int] = []
        kept_of: dict[int, list[int]] = {}
        thresh = np.float32(nms_thresh)
        seen = 0
        chunk = max(4 * top_k, 256)
        while len(kept) < top_k and seen < len(scores):
            # the next chunk of candidates, best first; ties in stored order (a stable sort)
            upto = min(len(scores), seen + chunk)
            if upto < len(scores):
                part = np.argpartition(-scores, upto - 1)[:upto]
                order = part[np.lexsort((part, -scores[part]))]
            else:
                order = np.lexsort((np.arange(len(scores)), -scores))
            for index in order[seen:upto]:
                video = int(self.video[index])
                mine = kept_of.setdefault(video, [])
                if per_video is not None and len(mine) >= per_video:
                    continue
                if mine and (span_iou(self.spans_s[mine], self.spans_s[index]) > thresh).any():
                    continue
                mine.append(int(index))
                kept.append(int(index))
                if len(kept) == top_k:
                    break
            seen = upto
            chunk *= 4
        return kept
