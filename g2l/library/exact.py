"""Exact search over stored moment embeddings: every moment of every video scored against the query
(two matrix products), then the best moments across the library, at most ``per_video`` of each
video, after NMS within each video as ``Grounder.ground`` does it.

This is the embedded backend behind ``VideoIndex.search``. Its interface is the one an approximate
or remote backend would implement: built from the shards' arrays, ``scores(s_c, s_u)`` gives one
float32 score per stored moment, and ``rank`` turns scores into hits. The candidate backends
(g2l/library/approximate.py: FAISS; g2l/library/milvus.py) fetch candidates by the mean of the two
cosines and return exact ``scores`` for those alone, through this class.
``top(s_c, s_u, ...)`` (what ``VideoIndex.search`` runs) returns ``rank(scores(...))`` and its
scores, the same bits, reading the contrast features only of the moments whose bound from the IoU
cosine can still enter the ranking (its docstring proves the stopping rule).

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
from g2l.ops.spans import best_first, span_iou


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
        self._largest_norm: float | None = None  # of the rows of cells_c (top's bound)
        self._queried = False

    def __len__(self) -> int:
        return len(self.video)

    def _cosines(self, which: str, sentence: np.ndarray) -> torch.Tensor:
        """The float32 cosines ``(k)`` of every stored moment's ``cells_c`` or ``cells_u`` with a sentence."""
        cosines = torch.empty(len(self.video), dtype=torch.float32)  # (k)
        start = 0
        for block in self.blocks:
            end = start + len(block.video)
            cells = getattr(block, which)
            if cells.dtype == np.float16:  # torch has float16 kernels; numpy only converts
                cosines[start:end] = torch.from_numpy(cells) @ torch.from_numpy(sentence.astype(np.float16))
            else:
                cosines[start:end] = torch.from_numpy(np.asarray(cells) @ sentence.astype(np.float32))
            start = end
        return cosines

    @torch.inference_mode()
    def scores(self, s_c: np.ndarray, s_u: np.ndarray) -> np.ndarray:
        """One query's ``(d)`` sentence features -> float32 scores ``(k)`` of every stored moment
        (non-finite ones, from a crafted shard, become -inf: never ranked above a real one)."""
        return _final(score_cells(self._cosines("cells_c", s_c), self._cosines("cells_u", s_u), self.gamma))

    @torch.inference_mode()
    def top(self, s_c: np.ndarray, s_u: np.ndarray, *, top_k: int, per_video: int | None,
            nms_thresh: float) -> tuple[list[int], np.ndarray]:
        """``rank(scores(s_c, s_u), ...)`` and those moments' scores, the same bit for bit, reading the
        contrast features of few moments: the IoU cosines of all (half the bytes), then the exact
        scores of the moments best by IoU cosine alone, until no other can enter the ranking.

        The bound. A score ``((c+1)/2)^gamma * sigmoid(10 u)`` grows with ``u``, and ``c`` is at
        most ``|cells_c row| |s_c|`` (Cauchy-Schwarz; the largest row norm is measured once), so
        ``bound(u) = sigmoid(10 u) * ((c_max+1)/2)^gamma`` with relative margins far above float16
        and float32 rounding (non-finite features: no bound, every moment scored). The IoU term
        ranks across videos far better than the contrast term does (on the demo's real videos 6% of
        moments have a bound reaching the 10th score, by the contrast term all of them).

        Why it is exact. Let S be the scored moments, L = ``rank`` of S alone (in stored order, so
        ties break alike) with ``top_k`` moments, and T the score of L's last. If every moment
        outside S scores below T (its bound, at most the bound of the best IoU cosine outside S, is
        below T), then ``rank`` over all moments takes, up to L's last, the moments of S in the
        same order (every other comes after it, strictly lower), and each decision (NMS,
        ``per_video``) depends only on the moments taken before it in the same video: the same
        decisions, L again, and it stops there. NMS can lower T as S grows (a new moment may
        suppress two kept ones), so the rule is checked on the final S with its exact scores.

        The same bits as ``scores``: the elementwise kernels round a moment's score alike wherever it
        lies, except in the scalar tail of a vectorised loop (the array's end, each thread's share),
        so the final scores are computed on arrays of all ``k`` moments (the contrast cosines of the
        unscored ones left 0), as ``scores`` does; a float16 product gives a row the same value
        whichever rows it is multiplied with (tests/library/test_exact.py checks both). Float32
        storage (numpy's BLAS rounds a row by its place in the block) scores every moment; so does a
        query whose bound prunes little (unrelated cosines: one product is then cheaper), and the
        first query (a one-off ``g2l-search`` reads each byte once; the norms are measured at the
        second)."""
        n = len(self.video)
        if n == 0:
            return [], np.zeros(0, np.float32)
        once = self._largest_norm is None and not self._queried  # a one-off query: no norm pass
        self._queried = True
        factor = np.inf if once or any(b.cells_c.dtype != np.float16 for b in self.blocks) else self._contrast_factor(s_c)
        if not np.isfinite(factor):
            scores = self.scores(s_c, s_u)
            kept = self.rank(scores, top_k=top_k, per_video=per_video, nms_thresh=nms_thresh)
            return kept, scores[kept]
        iou = self._cosines("cells_u", s_u)  # (k)
        key = torch.nan_to_num(iou, nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf).numpy()  # NaN: scores -inf
        contrast = torch.zeros(n, dtype=torch.float32)  # (k) filled where scored
        scored = np.zeros(n, bool)
        starts = np.cumsum([0] + [len(b.video) for b in self.blocks])
        s_c16 = torch.from_numpy(s_c.astype(np.float16))
        wanted, rest = _best(key, min(n, FIRST * top_k))
        exact = False
        while True:
            new = wanted[~scored[wanted]]
            if len(new):
                new.sort()
                exact = False
                for b, block in enumerate(self.blocks):
                    lo, hi = np.searchsorted(new, (starts[b], starts[b + 1]))
                    if hi > lo:
                        rows = np.ascontiguousarray(block.cells_c[new[lo:hi] - starts[b]])
                        contrast[new[lo:hi]] = (torch.from_numpy(rows) @ s_c16).float()
                scored[new] = True
            members = np.flatnonzero(scored)  # stored order
            if len(members) == n:  # all scored: scores() exactly
                scores = _final(score_cells(contrast, iou, self.gamma))
                kept = self.rank(scores, top_k=top_k, per_video=per_video, nms_thresh=nms_thresh)
                return kept, scores[kept]
            if exact:  # the scalar tails as scores() rounds them
                sub = _final(score_cells(contrast, iou, self.gamma))[members]
            else:  # within float32's pow/sigmoid rounding of the exact ones
                sub = _final(score_cells(contrast[members], iou[members], self.gamma))
            kept = _greedy(sub, self.spans_s[members], self.video[members], top_k, per_video, nms_thresh)
            threshold = float(sub[kept[-1]]) if len(kept) == top_k else -np.inf
            if rest is None:  # the best IoU cosine left
                rest = float(key[~scored].max())
            if bound(rest, factor) < threshold:
                if exact:
                    return [int(m) for m in members[kept]], sub[kept]
                exact = True
                continue
            # every moment whose bound reaches the threshold, and at least twice as many as now
            reach = key >= cut(threshold, factor)
            if np.count_nonzero(reach) > n * PRUNED_AT_MOST:  # one product is cheaper
                contrast = self._cosines("cells_c", s_c)
                scored[:] = True
                continue
            wanted = np.flatnonzero(reach)
            if len(wanted) < 2 * len(members):
                wanted, _ = _best(key, min(n, 2 * len(members)))
            rest = None

    def _contrast_factor(self, s_c: np.ndarray) -> float:
        """More than ``((c+1)/2)^gamma`` for any stored moment's contrast cosine ``c`` with ``s_c``."""
        if self._largest_norm is None:  # once (about 100 ms at 10k videos): every row of cells_c read
            norms = [float(torch.linalg.vector_norm(torch.from_numpy(np.asarray(b.cells_c[i:i + 8192])).float(),
                                                    dim=-1).max())
                     for b in self.blocks for i in range(0, len(b.video), 8192)]
            self._largest_norm = max(norms, default=0.0) if np.isfinite(norms).all() else np.inf
        largest = self._largest_norm * float(np.linalg.norm(s_c.astype(np.float16).astype(np.float64)))
        if not np.isfinite(largest):
            return np.inf
        return (max(0.5 * (largest * (1 + 4e-3) + 1e-6) + 0.5, 0.0) ** self.gamma) * (1 + 1e-4)

    def rank(self, scores: np.ndarray, *, top_k: int, per_video: int | None, nms_thresh: float) -> list[int]:
        """Indices of the best ``top_k`` moments, best first: greedy NMS within each video (IoU >
        ``nms_thresh`` suppressed, float32, as g2l/ops/spans.py) and at most ``per_video`` a video."""
        return _greedy(scores, self.spans_s, self.video, top_k, per_video, nms_thresh)


def _final(scores: torch.Tensor) -> np.ndarray:
    """Non-finite scores (from a crafted shard) become -inf: never ranked above a real one."""
    return torch.nan_to_num_(scores, nan=-torch.inf, posinf=-torch.inf, neginf=-torch.inf).numpy()


def _best(key: np.ndarray, count: int) -> tuple[np.ndarray, float | None]:
    """Indices of ``count`` moments of the largest ``key`` (any order among equals at the edge) and the
    largest key of the others (None: none left)."""
    if count >= len(key):
        return np.arange(len(key)), None
    part = np.argpartition(-key, count)
    return part[:count], float(key[part[count]])


FIRST = 128  # times top_k: the moments scored first
PRUNED_AT_MOST = 0.2  # of the moments: above it, the contrast product over all of them is cheaper (bench/search.py)


def bound(iou_cos: float, factor: float) -> float:
    """More than any float32 score of a moment of IoU cosine ``iou_cos`` (-inf: NaN, scored -inf)."""
    with np.errstate(over="ignore"):
        return factor / (1 + np.exp(-10 * iou_cos)) * (1 + 1e-4) + 1e-30


def cut(threshold: float, factor: float) -> float:
    """An IoU cosine below which no moment's bound reaches ``threshold``."""
    if threshold <= 0:
        return -np.inf
    p = threshold / (factor * (1 + 2e-4))
    return np.inf if p >= 1 else float(np.log(p / (1 - p)) / 10) - 1e-3


def _greedy(scores: np.ndarray, spans_s: np.ndarray, video: np.ndarray, top_k: int, per_video: int | None,
            nms_thresh: float) -> list[int]:
    """``ExactSearch.rank`` over the moments ``scores, spans_s, video (k)``."""
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
            order = best_first(scores)
        for index in order[seen:upto]:
            v = int(video[index])
            mine = kept_of.setdefault(v, [])
            if per_video is not None and len(mine) >= per_video:
                continue
            if mine and (span_iou(spans_s[mine], spans_s[index]) > thresh).any():
                continue
            mine.append(int(index))
            kept.append(int(index))
            if len(kept) == top_k:
                break
        seen = upto
        chunk *= 4
    return kept
