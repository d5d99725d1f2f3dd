"""Torch kernels of the geodesic closeness (docs/method.md section 3), on the features' device.

The same graph and closeness as the Numba kernels of :mod:`g2l.ops.geodesic_numba` (the definitions
are in :mod:`g2l.ops.geodesic`, which checks the input and dispatches here for ``kernels="torch"``):

* :func:`knn_graph_torch`: per video the Gram matrix of the float32 unit rows and an exact top-k
  whose ties go to the lower cell index. ``topk`` alone leaves the order of equal values
  unspecified, so it runs on int64 keys that order by similarity, then by the lower index: the
  float32 bits mapped to an order-preserving int32, times ``2^32``, plus ``2^32 - 1 - index``.
  No key repeats, so the result is the stable descending argsort's on every device.
* :func:`bounded_shortest_paths`: min-plus (Bellman-Ford) relaxation of every (video, source)
  row of the batch at once, ``dist[b] = min(dist[b], min over edges u -> b of dist[u] + cost)``,
  keeping only candidates ``<= cutoff``. A shortest path within the cut-off has at most ``p - 1``
  edges, and so does a minimal path of the float-rounded sums (a cycle never lowers a sum of costs
  ``>= 0``), so ``p - 1`` rounds are exact; a row that one round leaves unchanged is already the
  fixed point and is retired. The rows are checked every ``check_every`` rounds only (the one
  host sync of the loop), and the fixed point is the Dijkstra's: both take, per cell, the least
  float64 left-to-right sum of edge costs over paths from the source that stay within the
  cut-off, so the values agree exactly, not just up to round-off.

Shapes: ``b`` videos, ``p`` cells per video, ``d`` channels, ``q`` sources across the batch, ``k``
neighbours.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["bounded_shortest_paths", "closeness_torch", "knn_graph_torch", "ieee_float32_matmul"]


@contextlib.contextmanager
def ieee_float32_matmul():
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


def _order_keys(sims: torch.Tensor) -> torch.Tensor:
    """``(c p p)`` float32 -> int64 keys, larger for a larger similarity, then for a lower index."""
    p = sims.shape[-1]
    bits = (sims + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0, which ties with it
    keys = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long()  # negative floats' bits flipped: int order == float order
    keys <<= 32  # in place: this function's cost is memory traffic over (c p p)
    keys |= (2**32 - 1) - torch.arange(p, device=sims.device)  # (p,) the lower index, the larger key
    return keys  # (c p p)


def knn_graph_torch(features: torch.Tensor, k: int, valid: torch.Tensor,
                    max_chunk_elements: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN graph per video, on the features' device.

    Args:
        features: ``(b p d)`` tensor, any float dtype (normalised here: float64 norm, float32 rows,
            the Numba kernels' normalisation).
        k: neighbours per cell; every video must have more than ``k`` valid cells (checked by the
            caller).
        valid: ``(b p)`` bool mask on the same device; invalid cells are never neighbours.
        max_chunk_elements: bound on ``videos * p * p`` similarities held at once (about 20 bytes
            each at the peak, with their sort keys: 320 MiB at the default).
    Returns:
        ``knn_idx (b p k)`` int64 and ``knn_cost (b p k)`` float64 ``max(0, 1 - cos)``, rows in
        decreasing similarity, ties broken by the lower index; rows of invalid cells are filled
        but never reached.
    """
    num_videos, p, _ = features.shape
    x64 = features.detach().double()
    x = (x64 / x64.norm(dim=-1, keepdim=True).clamp_min(1e-12)).float()  # (b p d)
    knn_idx = torch.empty((num_videos, p, k), dtype=torch.int64, device=x.device)
    knn_cost = torch.empty((num_videos, p, k), dtype=torch.float64, device=x.device)
    chunk = max(1, max_chunk_elements // max(1, p * p))
    eye = torch.eye(p, dtype=torch.bool, device=x.device)
    for first in range(0, num_videos, chunk):
        xs = x[first : first + chunk]
        with ieee_float32_matmul():
            sims = torch.bmm(xs, xs.transpose(1, 2))  # (c p p)
        excluded = eye | ~valid[first : first + chunk, None, :]  # (c p p)
        sims.masked_fill_(excluded, -torch.inf)
        top_idx = _order_keys(sims).topk(k, dim=-1).indices  # (c p k), sorted
        top_val = sims.gather(-1, top_idx).double()  # (c p k)
        knn_idx[first : first + chunk] = top_idx
        knn_cost[first : first + chunk] = (1.0 - top_val).clamp_min(0.0)
    return knn_idx, knn_cost


def bounded_shortest_paths(knn_idx: torch.Tensor, knn_cost: torch.Tensor, video_idx: torch.Tensor,
                           sources: torch.Tensor, cutoff: float, check_every: int = 4,
                           max_chunk_elements: int = 1 << 24) -> torch.Tensor:
    """Shortest path lengths from each source along the kNN edges, bounded by ``cutoff``.

    Args:
        knn_idx: ``(b p k)`` int64 neighbour indices; knn_cost: ``(b p k)`` float64 costs ``>= 0``.
        video_idx: ``(q,)`` int64, the video of each source; sources: ``(q,)`` int64 cell indices.
        cutoff: a cell is reachable iff its distance is ``<= cutoff``.
        check_every: rounds between convergence checks (each check syncs with the host once).
        max_chunk_elements: bound on ``rows * p * k`` edge candidates held at once.
    Returns:
        ``dist (q p)`` float64 on the graph's device, ``inf`` where unreachable.
    """
    _, p, k = knn_idx.shape
    num_rows = sources.shape[0]
    device = knn_cost.device
    dist = torch.full((num_rows, p), torch.inf, dtype=torch.float64, device=device)
    rows_per_chunk = max(1, max_chunk_elements // max(1, p * k))
    for first in range(0, num_rows, rows_per_chunk):
        rows = torch.arange(first, min(first + rows_per_chunk, num_rows), device=device)  # (r,)
        dist[rows] = _relax_rows(knn_idx[video_idx[rows]], knn_cost[video_idx[rows]], sources[rows], cutoff,
                                 check_every)
    return dist


def _relax_rows(nbr: torch.Tensor, cost: torch.Tensor, sources: torch.Tensor, cutoff: float,
                check_every: int) -> torch.Tensor:
    """``nbr, cost (r p k)``: each row's own graph; ``sources (r,)`` -> ``dist (r p)`` float64."""
    num_rows, p, k = nbr.shape
    device = cost.device
    out = torch.full((num_rows, p), torch.inf, dtype=torch.float64, device=device)
    out[torch.arange(num_rows, device=device), sources] = 0.0
    active = torch.arange(num_rows, device=device)  # rows not yet at their fixed point
    dist = out.clone()
    nbr = nbr.reshape(num_rows, p * k)
    cost = cost.reshape(num_rows, p, k)
    rounds = 0
    while active.numel():
        for step in range(check_every):
            candidates = (dist[:, :, None] + cost).reshape(-1, p * k)  # (a p*k): u's dist + cost(u -> b)
            new = dist.scatter_reduce(1, nbr, candidates, reduce="amin", include_self=True)  # (a p)
            new.masked_fill_(new > cutoff, torch.inf)  # dist <= cutoff never loses to a longer candidate
            rounds += 1
            if step == check_every - 1 or rounds >= p - 1:
                changed = (new != dist).any(dim=1)  # (a,); unchanged rows are at the fixed point
                break
            dist = new
        if rounds >= p - 1:  # p - 1 rounds reach every shortest path: all rows are final
            changed = torch.zeros_like(changed)
        out[active] = new
        keep = changed.nonzero().squeeze(1)  # the one host sync per check_every rounds
        active, dist, nbr, cost = active[keep], new[keep], nbr[keep], cost[keep]
    return out


def closeness_torch(features: torch.Tensor, valid: torch.Tensor, video_idx: torch.Tensor, sources: torch.Tensor,
                    k: int, cutoff: float) -> torch.Tensor:
    """``G (q p)`` float32 on the features' device: ``1 - dist`` within the cut-off, 0 beyond.

    Args:
        features: ``(b p d)``; valid: ``(b p)`` bool; video_idx, sources: ``(q,)`` int64, the
            video and the cell of each source, all on one device and checked by the caller.
    """
    knn_idx, knn_cost = knn_graph_torch(features, k, valid)  # (b p k) each
    dist = bounded_shortest_paths(knn_idx, knn_cost, video_idx, sources, cutoff)  # (q p)
    return torch.where(dist <= cutoff, 1.0 - dist, 0.0).float()
