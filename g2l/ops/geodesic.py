"""Geodesic closeness G of moment cells to the ground-truth cell (docs/method.md section 3).

Per video, without gradient, over the video's ``p`` valid cells with L2-normalised contrastive
features ``x``:

* a directed k-nearest-neighbour graph: cell ``a`` has an edge to each of its ``k`` most
  cosine-similar other cells (itself excluded; equal similarities are broken by the lower cell
  index, i.e. a stable descending sort of the row), with cost ``max(0, 1 - cos(a, b))`` (the clamp
  only removes float round-off below zero);
* a shortest-path search from each source cell ``g_j`` along outgoing edges, bounded by
  ``cutoff``: a cell whose distance is ``<= cutoff`` is reachable (as the ``limit`` of
  ``scipy.sparse.csgraph.dijkstra``), anything farther is not;
* ``G[j, b] = 1 - dist(g_j, b)`` for reachable ``b`` (so ``G`` lies in ``[1 - cutoff, 1]``),
  ``0`` otherwise, and ``G[j, g_j] = 1``.

Two ways to obtain the kNN rows, both feeding the same compiled (Numba) bounded Dijkstra:

* ``knn="lazy"`` (CPU): a Dijkstra only follows the edges of the cells it settles, so each
  settled cell's kNN row is computed on demand inside the kernel and cached across the sources
  of the same video. A row costs one dot product against every cell (``p d``) plus a partial
  top-k, or, once some rows are known, far fewer: triangle-inequality bounds from "pivot" rows
  rule out most candidates exactly (see the comment above ``_MAX_PIVOTS``). With few reachable
  cells (unstructured features) the cost is a handful of rows; when most of the map lies within
  ``cutoff`` (smooth, max-pooled map features) it is a fraction of one dense Gram matrix.
* ``knn="dense"``: the whole Gram matrix per video with torch on the features' device (a GPU
  in training), exact top-k with the same tie rule, then the Numba Dijkstra on the small
  ``(b p k)`` graph copied to the CPU.

``knn="auto"`` picks dense for CUDA tensors and lazy otherwise. Both produce the same kNN graph
up to float round-off in the similarities (a kNN choice can differ only where two candidates'
similarities are within a few ulps of each other).

Shapes use the axis glossary of :mod:`g2l`: ``b`` videos, ``p`` cells per video (here the valid
cells of the ``(t t)`` map, gathered in any fixed order), ``d`` channels, ``q`` sources (sentences)
across the batch, ``k`` neighbours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from numba import njit, prange

from g2l.ops.threads import kernel_threads

__all__ = [
    "geodesic_closeness",
    "geodesic_closeness_batch",
    "knn_graph",
    "closeness_from_knn_graph",
]


# ---------------------------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=True)
def _dot(x, a, b):
    """``<x[a], x[b]>`` in float32 (vectorised; the same code for every pair)."""
    acc = np.float32(0.0)
    for c in range(x.shape[1]):
        acc += x[a, c] * x[b, c]
    return acc


@njit(cache=True)
def _unit_rows(features, valid):
    """``(p d)`` float32 -> float32 rows of unit norm (zero rows stay zero), and whether every
    valid row came out of norm 1 up to ``1e-6`` (needed by the pivot bounds)."""
    p, d = features.shape
    x = np.empty((p, d), dtype=np.float32)
    all_unit = True
    for b in range(p):
        acc = 0.0
        for c in range(d):
            acc += np.float64(features[b, c]) * np.float64(features[b, c])
        inv = 1.0 / max(np.sqrt(acc), 1e-12)
        check = 0.0
        for c in range(d):
            x[b, c] = np.float32(features[b, c] * inv)
            check += np.float64(x[b, c]) * np.float64(x[b, c])
        if valid[b] and abs(check - 1.0) > 1e-6:
            all_unit = False
    return x, all_unit


@njit(cache=True)
def _insert_neighbour(top_val, top_idx, s, b):
    """Insert candidate ``(s, b)`` into the k best kept in ``top_val/top_idx`` (descending).

    Order: higher similarity first, equal similarities by the lower index (the order of a stable
    descending argsort), whatever order candidates arrive in. Empty slots hold ``(-inf, -1)``.
    """
    k = top_val.shape[0]
    last_val, last_idx = top_val[k - 1], top_idx[k - 1]
    if not (s > last_val or (s == last_val and last_idx >= 0 and b < last_idx)):
        return
    pos = k - 1
    while pos > 0 and (top_val[pos - 1] < s or (top_val[pos - 1] == s and top_idx[pos - 1] > b)):
        top_val[pos] = top_val[pos - 1]
        top_idx[pos] = top_idx[pos - 1]
        pos -= 1
    top_val[pos] = s
    top_idx[pos] = b


@njit(cache=True)
def _store_row(u, top_val, top_idx, knn_idx, knn_cost):
    """Kept neighbours -> edge costs ``max(0, 1 - cos)``; empty slots become ``u -> u`` at inf."""
    for e in range(top_val.shape[0]):
        if top_idx[e] < 0:
            knn_idx[u, e] = u
            knn_cost[u, e] = np.inf
        else:
            knn_idx[u, e] = top_idx[e]
            cost = 1.0 - np.float64(top_val[e])
            knn_cost[u, e] = cost if cost > 0.0 else 0.0


# Lazy rows and pivots. A Dijkstra only follows the edges of the cells it settles, so a cell's kNN
# row is computed when the cell is settled, then cached for the next sources of the video.
#
# Cells whose full similarity row was computed become pivots (up to _MAX_PIVOTS per video). For
# each, pivot_e_lo/hi (m p) bracket the Euclidean distance e(pivot, b) = |x_pivot - x_b| =
# sqrt(2 - 2 cos), widened for the float32 round-off of the similarity and of the unit norms, so
# the triangle inequality e(u, b) >= |e(pivot, u) - e(pivot, b)| bounds cos(u, b) from above,
# rigorously. A later row u is computed exactly only for the candidates whose bound (from the
# two pivots nearest to u) can still reach the k-th best similarity found so far, or
# 1 - cutoff (an edge longer than the cut-off is never followed, so which cells fill such slots
# cannot change G). Seeds for the k-th best: the cell u was reached from, the nearest pivot, and
# their neighbours. When more than p / 4 candidates survive, the row is computed in full and
# becomes a pivot; when the bounds keep failing (features without structure) the video stops
# trying. The closeness equals the full-graph one; only the work changes: on smooth map
# features, where most of the map lies within the cut-off, most rows cost a couple of hundred
# dot products instead of p.

_MAX_PIVOTS = 256


@njit(cache=True)
def _full_row(x, valid, u, sims, top_val, top_idx):
    """Row u against every valid cell; leaves all similarities in ``sims (p,)``."""
    p = x.shape[0]
    for b in range(p):
        sims[b] = _dot(x, u, b)
    k = top_val.shape[0]
    kth = top_val[k - 1]
    for b in range(p):
        s = sims[b]
        if s >= kth and b != u and valid[b]:  # cheap pre-test; ties are decided inside
            _insert_neighbour(top_val, top_idx, s, b)
            kth = top_val[k - 1]


@njit(cache=True)
def _register_pivot(sims, slot, pivot_e_lo, pivot_e_hi, eta):
    """Distance brackets of a new pivot from its similarity row (slack ``eta`` on e^2)."""
    for b in range(sims.shape[0]):
        e_sq = 2.0 - 2.0 * np.float64(sims[b])
        lo = e_sq - eta
        hi = e_sq + eta
        pivot_e_lo[slot, b] = np.sqrt(lo if lo > 0.0 else 0.0) * (1.0 - 1e-6)
        pivot_e_hi[slot, b] = np.sqrt(hi if hi > 0.0 else 0.0) * (1.0 + 1e-6) + 1e-7


@njit(cache=True)
def _seed(x, valid, u, w, knn_idx, has_row, seen, top_val, top_idx):
    """Exact candidates ``w`` and, if cached, w's neighbours (each cell once per row u)."""
    k = top_val.shape[0]
    last = k if has_row[w] else 0
    for e in range(-1, last):
        b = w if e < 0 else knn_idx[w, e]
        if b != u and valid[b] and seen[b] != u:
            seen[b] = u
            _insert_neighbour(top_val, top_idx, _dot(x, u, b), b)


@njit(cache=True)
def _pivot_gap(slot, b, e_lo_u, e_hi_u, pivot_e_lo, pivot_e_hi):
    """Lower bound on e(u, b) from one pivot (triangle inequality on the brackets)."""
    return max(e_lo_u - pivot_e_hi[slot, b], pivot_e_lo[slot, b] - e_hi_u, 0.0)


@njit(cache=True)
def _pruned_row(x, valid, u, slot, slot2, pivot_e_lo, pivot_e_hi, seen, top_val, top_idx,
                min_keep, slack, cand_idx, cand_bound, bounds):
    """Finish row u exactly where the bounds of pivots ``slot`` and ``slot2`` allow; False (row
    unfinished) if more candidates survive than ``cand_idx`` holds. ``bounds (p,)`` float64 is
    scratch space."""
    p = x.shape[0]
    k = top_val.shape[0]
    e_lo_u, e_hi_u = np.float64(pivot_e_lo[slot, u]), np.float64(pivot_e_hi[slot, u])
    e_lo_u2, e_hi_u2 = np.float64(pivot_e_lo[slot2, u]), np.float64(pivot_e_hi[slot2, u])
    threshold = max(min_keep, np.float64(top_val[k - 1]))
    # Two passes: the bounds for every cell in a branch-free loop that LLVM vectorises, then the
    # survivors. (One fused loop with the tests inside ran ~3x slower and was most of the cost
    # of a smooth map, where nearly every row is pruned.)
    for b in range(p):
        gap = max(_pivot_gap(slot, b, e_lo_u, e_hi_u, pivot_e_lo, pivot_e_hi),
                  _pivot_gap(slot2, b, e_lo_u2, e_hi_u2, pivot_e_lo, pivot_e_hi))
        bounds[b] = 1.0 + slack - 0.5 * gap * gap  # >= float32 cos(u, b)
    capacity = cand_idx.shape[0]
    survivors = 0
    for b in range(p):
        bound = bounds[b]
        if bound >= threshold and b != u and valid[b] and seen[b] != u:
            if survivors == capacity:
                return False
            cand_idx[survivors] = b
            cand_bound[survivors] = bound
            survivors += 1
    for c in range(survivors):
        if cand_bound[c] >= threshold:  # may still make the k best
            b = cand_idx[c]
            _insert_neighbour(top_val, top_idx, _dot(x, u, b), b)
            threshold = max(min_keep, np.float64(top_val[k - 1]))
    return True


@njit(cache=True)
def _heap_push(heap_key, heap_node, size, key, node):
    """Binary min-heap push; returns the new size."""
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if heap_key[parent] <= key:
            break
        heap_key[pos] = heap_key[parent]
        heap_node[pos] = heap_node[parent]
        pos = parent
    heap_key[pos] = key
    heap_node[pos] = node
    return size + 1


@njit(cache=True)
def _heap_pop(heap_key, heap_node, size):
    """Binary min-heap pop of the root; returns ``(key, node, new_size)``."""
    top_key = heap_key[0]
    top_node = heap_node[0]
    size -= 1
    last_key = heap_key[size]
    last_node = heap_node[size]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and heap_key[child + 1] < heap_key[child]:
            child += 1
        if heap_key[child] >= last_key:
            break
        heap_key[pos] = heap_key[child]
        heap_node[pos] = heap_node[child]
        pos = child
    if size > 0:
        heap_key[pos] = last_key
        heap_node[pos] = last_node
    return top_key, top_node, size


@njit(cache=True)
def _video_closeness(x, valid, sources, k, cutoff, knn_idx, knn_cost, has_row, prune, out):
    """Bounded Dijkstra from each source of one video; writes ``out (s p)`` (zeros beforehand).

    ``has_row[u]`` says whether ``knn_idx[u]``/``knn_cost[u]`` are filled; missing rows are
    computed from ``x (p d)`` (float32 unit rows) when u is settled, then kept for the next
    sources. ``prune`` enables the pivot bounds (needs rows of norm 1 up to round-off).
    """
    p = valid.shape[0]
    d = x.shape[1]
    dist = np.empty(p, dtype=np.float64)
    parent = np.empty(p, dtype=np.int64)
    settled = np.empty(p, dtype=np.bool_)
    heap_key = np.empty(p * k + 1, dtype=np.float64)
    heap_node = np.empty(p * k + 1, dtype=np.int64)
    # Lazy-row state (unused on a precomputed graph).
    sims = np.empty(p, dtype=np.float32)
    top_val = np.empty(k, dtype=np.float32)
    top_idx = np.empty(k, dtype=np.int64)
    seen = np.full(p, -1, dtype=np.int64)
    max_pivots = _MAX_PIVOTS if prune else 0
    pivot_e_lo = np.empty((max_pivots, p), dtype=np.float32)
    pivot_e_hi = np.empty((max_pivots, p), dtype=np.float32)
    pivots = np.empty(max_pivots, dtype=np.int64)
    num_pivots = 0
    pruning = prune
    successes = 0
    failures = 0
    dot_error = d * 2.0**-23  # > |float32 dot - exact dot| for unit rows, any summation order
    norm_error = 1e-6  # >= | |x|^2 - 1 | for the unit rows (checked by _unit_rows)
    eta = 2.0 * dot_error + 4.0 * norm_error  # slack on e^2 in the pivot brackets
    slack = dot_error + norm_error  # float32 cos(u, b) <= 1 + slack - gap^2 / 2
    min_keep = 1.0 - cutoff - 1e-7  # an edge below this similarity is longer than the cut-off
    cand_idx = np.empty(p // 4, dtype=np.int64)  # survivors of the bounds; more -> full row
    cand_bound = np.empty(p // 4, dtype=np.float64)
    bounds = np.empty(p, dtype=np.float64)  # scratch of _pruned_row
    for row in range(sources.shape[0]):
        src = sources[row]
        dist[:] = np.inf
        settled[:] = False
        dist[src] = 0.0
        parent[src] = -1
        size = _heap_push(heap_key, heap_node, 0, 0.0, src)
        while size > 0:
            du, u, size = _heap_pop(heap_key, heap_node, size)
            if settled[u]:
                continue
            settled[u] = True
            out[row, u] = np.float32(1.0 - du)
            if not has_row[u]:
                top_val[:] = -np.inf
                top_idx[:] = -1
                done = False
                if num_pivots > 0 and pruning:
                    # The two nearest pivots bound the row; the nearest also seeds it.
                    slot = 0
                    slot2 = 0
                    for m in range(1, num_pivots):
                        e_m = pivot_e_hi[m, u]
                        if e_m < pivot_e_hi[slot, u]:
                            slot2 = slot
                            slot = m
                        elif slot2 == slot or e_m < pivot_e_hi[slot2, u]:
                            slot2 = m
                    w = parent[u]
                    if w >= 0:
                        _seed(x, valid, u, w, knn_idx, has_row, seen, top_val, top_idx)
                    _seed(x, valid, u, pivots[slot], knn_idx, has_row, seen, top_val, top_idx)
                    done = _pruned_row(x, valid, u, slot, slot2, pivot_e_lo, pivot_e_hi, seen,
                                       top_val, top_idx, min_keep, slack, cand_idx, cand_bound,
                                       bounds)
                    if done:
                        successes += 1
                    else:
                        top_val[:] = -np.inf
                        top_idx[:] = -1
                        failures += 1
                        # Bounds too loose on these features: stop paying for them.
                        pruning = failures < 16 or failures < 2 * successes
                if not done:
                    _full_row(x, valid, u, sims, top_val, top_idx)
                    if pruning and num_pivots < max_pivots:
                        _register_pivot(sims, num_pivots, pivot_e_lo, pivot_e_hi, eta)
                        pivots[num_pivots] = u
                        num_pivots += 1
                _store_row(u, top_val, top_idx, knn_idx, knn_cost)
                has_row[u] = True
            for e in range(k):
                b = knn_idx[u, e]
                if settled[b]:
                    continue
                nd = du + knn_cost[u, e]
                if nd <= cutoff and nd < dist[b]:
                    dist[b] = nd
                    parent[b] = u
                    size = _heap_push(heap_key, heap_node, size, nd, b)


@njit(cache=True, parallel=True)
def _lazy_batch_kernel(features, valid, sources, source_offsets, k, cutoff, out):
    """``features (b p d)`` float32 (normalised here), ``valid (b p)``, ``sources (q,)`` grouped
    by video with ``source_offsets (b+1,)``; writes ``out (q p)``. One task per video."""
    num_videos, p, _ = features.shape
    for v in prange(num_videos):
        first = source_offsets[v]
        last = source_offsets[v + 1]
        if last == first:
            continue
        x, all_unit = _unit_rows(features[v], valid[v])
        knn_idx = np.empty((p, k), dtype=np.int64)
        knn_cost = np.empty((p, k), dtype=np.float64)
        has_row = np.zeros(p, dtype=np.bool_)
        _video_closeness(x, valid[v], sources[first:last], k, cutoff, knn_idx, knn_cost, has_row,
                         all_unit, out[first:last])


@njit(cache=True, parallel=True)
def _graph_batch_kernel(knn_idx, knn_cost, sources, source_offsets, cutoff, out):
    """Same as :func:`_lazy_batch_kernel` on a precomputed graph ``knn_idx, knn_cost (b p k)``."""
    num_videos, p, k = knn_idx.shape
    for v in prange(num_videos):
        first = source_offsets[v]
        last = source_offsets[v + 1]
        if last == first:
            continue
        no_features = np.empty((p, 0), dtype=np.float32)
        has_row = np.ones(p, dtype=np.bool_)
        valid = np.ones(p, dtype=np.bool_)
        _video_closeness(no_features, valid, sources[first:last], k, cutoff, knn_idx[v],
                         knn_cost[v], has_row, False, out[first:last])


# ---------------------------------------------------------------------------------------------
# Input checking and conversion
# ---------------------------------------------------------------------------------------------


def _check_k_cutoff(k: int, cutoff: float) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"geodesic closeness: k must be a positive integer, got {k!r}.")
    if not np.isfinite(cutoff) or cutoff < 0:
        raise ValueError(f"geodesic closeness: cutoff must be a finite number >= 0, got {cutoff!r}.")


def _pack_sources(sources: Sequence, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """List of ``b`` 1-D index arrays -> ``(q,)`` int64 indices and ``(b+1,)`` offsets, checked."""
    num_videos, p = valid.shape
    if len(sources) != num_videos:
        raise ValueError(
            f"geodesic closeness: got {len(sources)} source arrays for {num_videos} videos; "
            "pass one 1-D array of source cell indices per video."
        )
    packed, offsets = [], [0]
    for v, src in enumerate(sources):
        if isinstance(src, torch.Tensor):
            src = src.detach().cpu().numpy()
        src = np.asarray(src)
        if src.ndim == 0:
            src = src.reshape(1)
        if src.ndim != 1 or (src.size and not np.issubdtype(src.dtype, np.integer)):
            raise ValueError(
                f"geodesic closeness: sources of video {v} must be a 1-D array of integer cell "
                f"indices, got dtype {src.dtype} and shape {src.shape}."
            )
        src = src.astype(np.int64)
        bad = src[(src < 0) | (src >= p)]
        if bad.size:
            raise ValueError(
                f"geodesic closeness: source index {int(bad[0])} of video {v} is out of range "
                f"for {p} cells (valid indices are 0..{p - 1})."
            )
        if src.size and not valid[v, src].all():
            raise ValueError(
                f"geodesic closeness: source cell {int(src[~valid[v, src]][0])} of video {v} is "
                "marked invalid; sources must be valid cells."
            )
        packed.append(src)
        offsets.append(offsets[-1] + src.size)
    flat = np.concatenate(packed) if packed else np.zeros(0, dtype=np.int64)
    return flat.astype(np.int64), np.asarray(offsets, dtype=np.int64)


def _valid_mask(valid, num_videos: int, p: int) -> np.ndarray:
    if valid is None:
        return np.ones((num_videos, p), dtype=np.bool_)
    if isinstance(valid, torch.Tensor):
        valid = valid.detach().cpu().numpy()
    valid = np.asarray(valid)
    if valid.shape != (num_videos, p) or valid.dtype != np.bool_:
        raise ValueError(
            f"geodesic closeness: valid must be a boolean ({num_videos}, {p}) mask, got dtype "
            f"{valid.dtype} and shape {valid.shape}."
        )
    return np.ascontiguousarray(valid)


def _check_enough_cells(valid: np.ndarray, offsets: np.ndarray, k: int) -> None:
    counts = valid.sum(axis=1)
    has_sources = np.diff(offsets) > 0
    short = np.nonzero(has_sources & (counts <= k))[0]
    if short.size:
        v = int(short[0])
        raise ValueError(
            f"geodesic closeness: k={k} neighbours need more than k valid cells, but video {v} "
            f"has {int(counts[v])}; lower k or pass more cells."
        )


def _as_features(features) -> tuple[np.ndarray | torch.Tensor, bool]:
    if isinstance(features, torch.Tensor):
        x = features.detach()
        if not torch.isfinite(x).all():
            raise ValueError("geodesic closeness: features contain NaN or infinite values.")
        return x, True
    x = np.asarray(features)
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise ValueError("geodesic closeness: features must be a finite floating-point array.")
    return x, False


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _ieee_float32_matmul():
    """Full float32 matmul (no TF32, whose 10-bit mantissa would change neighbours) while inside;
    the caller's setting is restored afterwards."""
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def knn_graph(features, k: int = 5, valid=None, max_chunk_elements: int = 1 << 26):
    """Dense exact kNN graph per video, computed with torch on the features' device.

    Args:
        features: ``(b p d)`` tensor (any float dtype; normalised here in float32).
        k: neighbours per cell.
        valid: optional ``(b p)`` bool mask; invalid cells are never neighbours.
        max_chunk_elements: bound on ``videos * p * p`` similarities held at once.
    Returns:
        ``knn_idx (b p k)`` int64 and ``knn_cost (b p k)`` float64 numpy arrays (on the CPU),
        rows in decreasing similarity, ties broken by the lower index; rows of invalid cells are
        filled but never reached.
    """
    _check_k_cutoff(k, 0.0)
    x = features.detach() if isinstance(features, torch.Tensor) else torch.as_tensor(features)
    if x.ndim != 3:
        raise ValueError(f"knn_graph: features must be (b p d), got shape {tuple(x.shape)}.")
    num_videos, p, _ = x.shape
    valid_np = _valid_mask(valid, num_videos, p)
    if (valid_np.sum(axis=1) <= k).any():
        raise ValueError(f"knn_graph: k={k} neighbours need more than k valid cells in every video.")
    x64 = x.double()  # the lazy kernel's normalisation: float64 norm, float32 unit rows
    x = (x64 / x64.norm(dim=-1, keepdim=True).clamp_min(1e-12)).float()
    valid_t = torch.as_tensor(valid_np, device=x.device)
    knn_idx = np.empty((num_videos, p, k), dtype=np.int64)
    knn_cost = np.empty((num_videos, p, k), dtype=np.float64)
    chunk = max(1, max_chunk_elements // max(1, p * p))
    eye = torch.eye(p, dtype=torch.bool, device=x.device)
    for first in range(0, num_videos, chunk):
        xs = x[first : first + chunk]
        with _ieee_float32_matmul():
            sims = torch.bmm(xs, xs.transpose(1, 2))  # (c p p)
        excluded = eye | ~valid_t[first : first + chunk, None, :]  # (c p p)
        sims.masked_fill_(excluded, -torch.inf)
        top_val, top_idx = sims.topk(k + 1, dim=-1)  # (c p k+1), sorted
        top_val, top_idx = top_val.cpu().numpy(), top_idx.cpu().numpy()
        # topk's order among equal values is unspecified: redo rows where the k-th and (k+1)-th
        # values tie (the set is ambiguous) or any equal values sit inside the kept k (the order).
        tied = (top_val[..., 1:] == top_val[..., :-1]).any(axis=-1)
        top_val, top_idx = top_val[..., :k], top_idx[..., :k]
        if tied.any():
            for c, u in zip(*np.nonzero(tied)):
                row = sims[c, u].cpu().numpy()
                order = np.argsort(-row, kind="stable")[:k]
                top_val[c, u], top_idx[c, u] = row[order], order
        knn_idx[first : first + chunk] = top_idx
        knn_cost[first : first + chunk] = np.maximum(1.0 - top_val.astype(np.float64), 0.0)
    return knn_idx, knn_cost


def closeness_from_knn_graph(knn_idx: np.ndarray, knn_cost: np.ndarray, sources: Sequence,
                             cutoff: float = 0.5) -> np.ndarray:
    """Bounded-Dijkstra closeness on a given graph.

    Args:
        knn_idx: ``(b p k)`` int64 neighbour indices; knn_cost: ``(b p k)`` non-negative costs.
        sources: ``b`` 1-D arrays of source cell indices.
    Returns:
        ``(q p)`` float32 numpy array, rows grouped video by video, ``q = sum of len(sources)``.
    """
    _check_k_cutoff(knn_idx.shape[-1], cutoff)
    knn_idx = np.ascontiguousarray(knn_idx, dtype=np.int64)
    knn_cost = np.ascontiguousarray(knn_cost, dtype=np.float64)
    num_videos, p, _ = knn_idx.shape
    if (knn_idx < 0).any() or (knn_idx >= p).any() or (knn_cost < 0).any():
        raise ValueError("closeness_from_knn_graph: neighbour indices must be in [0, p) and costs >= 0.")
    flat, offsets = _pack_sources(sources, np.ones((num_videos, p), dtype=np.bool_))
    out = np.zeros((flat.size, p), dtype=np.float32)
    with kernel_threads():
        _graph_batch_kernel(knn_idx, knn_cost, flat, offsets, float(cutoff), out)
    return out


def geodesic_closeness_batch(features, sources: Sequence, valid=None, k: int = 5,
                             cutoff: float = 0.5, knn: str = "auto"):
    """Geodesic closeness of every cell to each source, for a batch of videos in one call.

    Args:
        features: ``(b p d)`` cell features (torch tensor or numpy array); rows are normalised
            here; no gradient flows.
        sources: ``b`` 1-D integer arrays (or tensors), video v's source cells ``(s_v,)``
            indexing its ``p`` cells, e.g. each sentence's best cell ``g_j``.
        valid: optional ``(b p)`` bool mask of the cells that exist (default: all); invalid
            cells are not in the graph and get 0.
        k: neighbours per cell; cutoff: path-length bound (reachable iff ``dist <= cutoff``).
        knn: ``"lazy"`` (Numba, on the CPU, kNN rows on demand), ``"dense"`` (torch Gram matrix
            on the features' device) or ``"auto"`` (dense on CUDA, lazy otherwise).
    Returns:
        ``(q p)`` closeness, ``q = sum_v s_v``, rows grouped video by video in the order given:
        a float32 torch tensor on the features' device for tensor input, else a numpy array.
    The Numba kernel runs one task per video in parallel over ``numba.get_num_threads()``
    threads; results do not depend on the thread count.
    """
    _check_k_cutoff(k, cutoff)
    if knn not in ("auto", "lazy", "dense"):
        raise ValueError(f"geodesic closeness: knn must be 'auto', 'lazy' or 'dense', got {knn!r}.")
    x, is_torch = _as_features(features)
    if x.ndim != 3:
        raise ValueError(f"geodesic closeness: batch features must be (b p d), got shape {tuple(x.shape)}.")
    num_videos, p, _ = x.shape
    valid_np = _valid_mask(valid, num_videos, p)
    flat, offsets = _pack_sources(sources, valid_np)
    _check_enough_cells(valid_np, offsets, k)
    if knn == "auto":
        knn = "dense" if is_torch and x.device.type == "cuda" else "lazy"
    out = np.zeros((flat.size, p), dtype=np.float32)
    if flat.size:
        if knn == "dense":
            with_sources = np.nonzero(np.diff(offsets) > 0)[0]
            x_sub = x[torch.as_tensor(with_sources, device=x.device)] if is_torch else x[with_sources]
            knn_idx, knn_cost = knn_graph(x_sub, k, valid_np[with_sources])
            sub_offsets = np.concatenate([[0], np.cumsum(np.diff(offsets)[with_sources])])
            with kernel_threads():
                _graph_batch_kernel(knn_idx, knn_cost, flat, sub_offsets.astype(np.int64), float(cutoff), out)
        else:
            x_np = x.float().cpu().numpy() if is_torch else x
            x_np = np.ascontiguousarray(x_np, dtype=np.float32)  # (b p d), normalised in the kernel
            with kernel_threads():
                _lazy_batch_kernel(x_np, valid_np, flat, offsets, int(k), float(cutoff), out)
    if is_torch:
        return torch.from_numpy(out).to(x.device)
    return out


def geodesic_closeness(features, sources, k: int = 5, cutoff: float = 0.5, knn: str = "auto"):
    """Geodesic closeness for one video.

    Args:
        features: ``(p d)`` cell features (torch tensor or numpy array), normalised here.
        sources: ``(s,)`` source cell indices (e.g. the ground-truth cells of s sentences).
        k, cutoff, knn: as in :func:`geodesic_closeness_batch`.
    Returns:
        ``G (s p)``: ``1 - dist(source, cell)`` for cells within ``cutoff``, 0 beyond, 1 at the
        source; float32 torch tensor on the input's device for tensor input, else numpy.
    """
    if features.ndim != 2:
        raise ValueError(f"geodesic closeness: features must be (p d), got shape {tuple(features.shape)}.")
    return geodesic_closeness_batch(features[None], [sources], None, k, cutoff, knn)
