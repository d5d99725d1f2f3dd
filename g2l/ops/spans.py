"""Spans in seconds and cells of the 2D moment map (docs/method.md section 1).

Conventions, exactly as the published numbers were computed:

* cell ``(i, j)``, ``0 <= i <= j < t``, is the moment ``[i * D / t, (j + 1) * D / t]``, computed in
  float32 as ``index * D / t`` (the product first, then the division);
* IoU of two spans is the intersection over the hull ``max(e) - min(s)``, in float32;
* thresholds are compared in float32 (a float32 IoU of 0.5 passes ``>= 0.5``; NMS suppresses when
  ``IoU > thresh`` with ``thresh`` cast to float32);
* candidates are ranked by a stable descending sort of their scores, so equal scores keep the
  row-major cell order (``i`` first, then ``j``).

All functions here take and return numpy arrays; they are pure and know nothing of config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32


def pooling_diagonals(num_clips: int, pooling_counts: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The cells each pooling level of MMN's sparse max-pool fills, in order.

    Level ``n`` (counting from 1) holds the cells at offset ``j - i`` equal to the running offset,
    with ``i`` on the current stride. The first group pools with stride 1; each later group starts
    with a stride-doubling pool. Returns ``[(start_idx, end_idx), ...]``, one pair per level; the
    diagonal (offset 0) is not included.
    """
    diagonals = []
    stride, offset = 1, 0
    for count in pooling_counts:
        for _ in range(count):
            offset += stride
            if offset >= num_clips:
                return diagonals
            start_idx = np.arange(0, num_clips - offset, stride)
            diagonals.append((start_idx, start_idx + offset))
        stride *= 2
    return diagonals


def pooling_mask(num_clips: int, pooling_counts: list[int]) -> np.ndarray:
    """Boolean ``(t t)`` mask of the valid proposal cells, derived from the pooling counts."""
    mask = np.zeros((num_clips, num_clips), dtype=bool)
    mask[np.arange(num_clips), np.arange(num_clips)] = True
    for start_idx, end_idx in pooling_diagonals(num_clips, pooling_counts):
        mask[start_idx, end_idx] = True
    return mask


def cells_to_spans(start_idx: np.ndarray, end_idx: np.ndarray, duration_s: float, num_clips: int) -> np.ndarray:
    """``(k,)`` start and end clip indices -> ``(k, 2)`` float32 spans in seconds."""
    d, t = F32(duration_s), F32(num_clips)
    starts = np.asarray(start_idx).astype(F32) * d / t
    ends = (np.asarray(end_idx) + 1).astype(F32) * d / t
    return np.stack([starts, ends], axis=-1)


def cell_spans(num_clips: int, duration_s: float) -> np.ndarray:
    """``(t, t, 2)`` float32: the span in seconds of every cell ``[start, end]`` (lower triangle too)."""
    idx = np.arange(num_clips)
    start_idx, end_idx = np.meshgrid(idx, idx, indexing="ij")
    return cells_to_spans(start_idx, end_idx, duration_s, num_clips)


def span_iou(spans: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Float32 IoU (intersection over hull) of ``spans (..., 2)`` and ``others (..., 2)``, broadcast."""
    spans = np.asarray(spans, dtype=F32)
    others = np.asarray(others, dtype=F32)
    inter = np.minimum(spans[..., 1], others[..., 1]) - np.maximum(spans[..., 0], others[..., 0])
    hull = np.maximum(spans[..., 1], others[..., 1]) - np.minimum(spans[..., 0], others[..., 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.maximum(inter, F32(0)) / hull
    return np.where(hull > 0, iou, F32(0)).astype(F32)


def pairwise_iou(spans: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``(k, 2)`` x ``(m, 2)`` -> ``(k, m)`` float32 IoU."""
    return span_iou(np.asarray(spans)[:, None, :], np.asarray(others)[None, :, :])


def iou_map(window_s: tuple[float, float] | np.ndarray, duration_s: float, num_clips: int) -> np.ndarray:
    """``(t t)`` float32 IoU of every cell with the ground-truth window (lower triangle included)."""
    return span_iou(cell_spans(num_clips, duration_s), np.asarray(window_s, dtype=F32))


def cell_candidates(score_map: np.ndarray, duration_s: float, mask: np.ndarray | None = None):
    """Score map ``(t t)`` -> ``(spans (k, 2), scores (k,))`` of its valid cells in row-major order.

    Valid cells are those of ``mask``, or the non-zero cells of the map when no mask is given
    (the convention of a predictions file's ``score_map``).
    """
    score_map = np.asarray(score_map, dtype=F32)
    valid = score_map != 0 if mask is None else np.asarray(mask, dtype=bool)
    start_idx, end_idx = np.nonzero(valid)  # row-major order
    return cells_to_spans(start_idx, end_idx, duration_s, score_map.shape[0]), score_map[start_idx, end_idx]


def best_first(scores: np.ndarray) -> np.ndarray:
    """Indices that sort ``scores (k,)`` descending; a stable sort, so equal scores keep their order."""
    return np.argsort(-np.asarray(scores), kind="stable")


# Up to this many kept spans, NMS runs as numpy passes (one per kept span) and grounding never
# imports numba (about half a second of a cold start); beyond it, the numba loop of g2l/ops/nms_kernel.py.
VECTORISED_KEEP = 64


def _greedy_nms_numpy(spans: np.ndarray, thresh: np.float32, max_keep: int) -> np.ndarray:
    """The numba loop's result, computed as one vectorised IoU pass per kept span, in the same
    float32 arithmetic (so the same spans are suppressed, to the bit)."""
    start, end = spans[:, 0], spans[:, 1]
    alive = np.ones(spans.shape[0], dtype=bool)
    keep = []
    position = 0
    while len(keep) < max_keep:
        rest = np.flatnonzero(alive[position:])
        if rest.size == 0:
            break
        a = position + int(rest[0])
        keep.append(a)
        position = a + 1
        inter = np.maximum(np.minimum(end[position:], end[a]) - np.maximum(start[position:], start[a]), F32(0))
        hull = np.maximum(end[position:], end[a]) - np.minimum(start[position:], start[a])
        iou = np.divide(inter, hull, out=np.zeros_like(inter), where=hull > 0)
        alive[position:] &= ~(iou > thresh)
    return np.asarray(keep, dtype=np.int64)


def nms(spans: np.ndarray, thresh: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS over spans already ranked best-first; returns the kept indices in rank order.

    A candidate is suppressed when its IoU with an already kept one is ``> thresh`` (float32).
    Keeping stops after ``max_keep`` (all when None): the first kept candidates never depend on
    later ones, so this equals full NMS truncated.
    """
    spans = np.ascontiguousarray(spans, dtype=F32).reshape(-1, 2)
    limit = spans.shape[0] if max_keep is None else max(int(max_keep), 0)
    if spans.shape[0] == 0 or limit == 0:
        return np.zeros(0, dtype=np.int64)
    if limit <= VECTORISED_KEEP:
        return _greedy_nms_numpy(spans, F32(thresh), limit)
    from g2l.ops.nms_kernel import greedy_nms

    return greedy_nms(spans, F32(thresh), limit)


def rank_candidates(spans: np.ndarray, scores: np.ndarray, nms_thresh: float, max_keep: int | None = None) -> np.ndarray:
    """The ranking rule, as indices into the candidates ``spans (k, 2)``, ``scores (k,)``: best
    first (stable, so equal scores keep the given order), after greedy NMS, at most ``max_keep``."""
    order = best_first(scores)
    return order[nms(np.asarray(spans)[order], nms_thresh, max_keep)]


@dataclass
class RankedMoments:
    """A query's moments, best first: what a model answers."""

    index: np.ndarray  # (k,) int64: each moment's position among the query's candidate cells
    spans: np.ndarray  # (k, 2) float32 seconds
    scores: np.ndarray  # (k,) float32


def rank_moments(scores: np.ndarray, spans: np.ndarray, nms_thresh: float, max_keep: int | None = None) -> RankedMoments:
    """A query's scores of its candidate cells ``(k,)``, whose spans in seconds are ``spans (k, 2)``
    (``cells_to_spans``, ``window_cell_spans``) -> its moments, ranked by ``rank_candidates``.

    The one road from scores to moments: ``Grounder``, the evaluator, the corpus evaluation and
    the re-scoring of a predictions file's maps (``ranked_candidates``) all rank here. A cell
    scored exactly 0 is a candidate like any other."""
    scores = np.asarray(scores, dtype=F32).reshape(-1)
    spans = np.asarray(spans, dtype=F32).reshape(-1, 2)
    keep = rank_candidates(spans, scores, nms_thresh, max_keep)
    return RankedMoments(keep, spans[keep], scores[keep])


def window_cell_spans(start_idx: np.ndarray, end_idx: np.ndarray, num_clips: int,
                      windows_s: list[tuple[float, float]]) -> np.ndarray:
    """``(C,)`` cells of a map of ``num_clips`` clips laid over each window ``(start_s, length_s)``
    -> ``(w*C, 2)`` float32 seconds, window by window (each window's spans, then its start added)."""
    return np.concatenate([cells_to_spans(start_idx, end_idx, length_s, num_clips) + F32(start_s)
                           for start_s, length_s in windows_s])


def ranked_candidates(score_map: np.ndarray, duration_s: float, nms_thresh: float,
                      max_keep: int | None = None, mask: np.ndarray | None = None):
    """Score map ``(t t)`` -> ``(spans (k, 2), scores (k,))`` ranked after NMS: ``rank_moments`` of
    the map's valid cells (``cell_candidates``: ``mask``'s, or the non-zero ones)."""
    spans, scores = cell_candidates(score_map, duration_s, mask)
    moments = rank_moments(scores, spans, nms_thresh, max_keep)
    return moments.spans, moments.scores
