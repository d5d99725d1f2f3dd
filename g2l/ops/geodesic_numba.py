"""Numba kernels of the geodesic closeness (docs/method.md section 3): a bounded Dijkstra per source
cell, one parallel task per video, on a precomputed kNN graph (:func:`graph_batch_kernel`) or with
each settled cell's kNN row computed on demand and cached across the sources of a video
(:func:`lazy_batch_kernel`). The definitions (graph, tie rule, cut-off, ``G``) and the public entry
points are in :mod:`g2l.ops.geodesic`, which checks the input and calls these kernels.

Shapes: ``b`` videos, ``C`` cells per video, ``d`` channels, ``q`` sources across the batch, ``k``
neighbours.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["graph_batch_kernel", "lazy_batch_kernel"]


@njit(cache=True, fastmath=True)
def _dot(x, a, b):
    """``<x[a], x[b]>`` in float32 (vectorised; the same code for every pair)."""
    acc = np.float32(0.0)
    for c in range(x.shape[1]):
        acc += x[a, c] * x[b, c]
    return acc


@njit(cache=True)
def _unit_rows(features, valid):
    """``(C d)`` float32 -> float32 rows of unit norm (zero rows stay zero), and whether every
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
    computed from ``x (C d)`` (float32 unit rows) when u is settled, then kept for the next
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
def lazy_batch_kernel(features, valid, sources, source_offsets, k, cutoff, out):
    """``features (b C d)`` float32 (normalised here), ``valid (b C)``, ``sources (q,)`` grouped
    by video with ``source_offsets (b+1,)``; writes ``out (q C)``. One task per video."""
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
def graph_batch_kernel(knn_idx, knn_cost, sources, source_offsets, cutoff, out):
    """Same as :func:`lazy_batch_kernel` on a precomputed graph ``knn_idx, knn_cost (b C k)``."""
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
