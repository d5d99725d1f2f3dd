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
  keeping only candidates ``<= cutoff``. A shortest path within the cut-off has at most ``C - 1``
  edges, and so does a minimal path of the float-rounded sums (a cycle never lowers a sum of costs
  ``>= 0``), so ``C - 1`` rounds are exact; a row that one round leaves unchanged is already the
  fixed point and is retired. The rows are checked every ``check_every`` rounds only (the one
  host sync of the loop), and the fixed point is the Dijkstra's: both take, per cell, the least
  float64 left-to-right sum of edge costs over paths from the source that stay within the
  cut-off, so the values agree exactly, not just up to round-off.
* :func:`relax_rounds`: the same fixed point with no host read at all, for the training step: a
  given number of rounds, each relaxing every walk of up to 3 edges (costs added left to right,
  so the values are the same), and a device flag saying whether the last round changed anything
  within the cut-off; the loss reads that flag with its one read of the step and learns the rounds
  it needs (g2l/losses/combine.py).

Shapes: ``b`` videos, ``C`` cells per video, ``d`` channels, ``q`` sources across the batch, ``k``
neighbours.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["bounded_shortest_paths", "closeness_torch", "hop_edges", "knn_graph_torch", "ieee_float32_matmul", "relax_rounds"]


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
    """``(c C C)`` float32 -> int64 keys, larger for a larger similarity, then for a lower index."""
    p = sims.shape[-1]
    bits = (sims + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0, which ties with it
    keys = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long()  # negative floats' bits flipped: int order == float order
    keys <<= 32  # in place: this function's cost is memory traffic over (c C C)
    keys |= (2**32 - 1) - torch.arange(p, device=sims.device)  # (p,) the lower index, the larger key
    return keys  # (c C C)


def knn_graph_torch(features: torch.Tensor, k: int, valid: torch.Tensor,
                    max_chunk_elements: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN graph per video, on the features' device.

    Args:
        features: ``(b C d)`` tensor, any float dtype (normalised here: float64 norm, float32 rows,
            the Numba kernels' normalisation).
        k: neighbours per cell; every video must have more than ``k`` valid cells (checked by the
            caller).
        valid: ``(b C)`` bool mask on the same device; invalid cells are never neighbours.
        max_chunk_elements: bound on ``videos * C * C`` similarities held at once (about 20 bytes
            each at the peak, with their sort keys: 320 MiB at the default).
    Returns:
        ``knn_idx (b C k)`` int64 and ``knn_cost (b C k)`` float64 ``max(0, 1 - cos)``, rows in
        decreasing similarity, ties broken by the lower index; rows of invalid cells are filled
        but never reached.
    """
    num_videos, p, _ = features.shape
    x64 = features.detach().double()
    x = (x64 / x64.norm(dim=-1, keepdim=True).clamp_min(1e-12)).float()  # (b C d)
    knn_idx = torch.empty((num_videos, p, k), dtype=torch.int64, device=x.device)
    knn_cost = torch.empty((num_videos, p, k), dtype=torch.float64, device=x.device)
    chunk = max(1, max_chunk_elements // max(1, p * p))
    eye = torch.eye(p, dtype=torch.bool, device=x.device)
    for first in range(0, num_videos, chunk):
        xs = x[first : first + chunk]
        with ieee_float32_matmul():
            sims = torch.bmm(xs, xs.transpose(1, 2))  # (c C C)
        excluded = eye | ~valid[first : first + chunk, None, :]  # (c C C)
        sims.masked_fill_(excluded, -torch.inf)
        top_idx = _order_keys(sims).topk(k, dim=-1).indices  # (c C k), sorted
        top_val = sims.gather(-1, top_idx).double()  # (c C k)
        knn_idx[first : first + chunk] = top_idx
        knn_cost[first : first + chunk] = (1.0 - top_val).clamp_min(0.0)
    return knn_idx, knn_cost


def bounded_shortest_paths(knn_idx: torch.Tensor, knn_cost: torch.Tensor, video_idx: torch.Tensor,
                           sources: torch.Tensor, cutoff: float, check_every: int = 4,
                           max_chunk_elements: int = 1 << 24) -> torch.Tensor:
    """Shortest path lengths from each source along the kNN edges, bounded by ``cutoff``.

    Args:
        knn_idx: ``(b C k)`` int64 neighbour indices; knn_cost: ``(b C k)`` float64 costs ``>= 0``.
        video_idx: ``(q,)`` int64, the video of each source; sources: ``(q,)`` int64 cell indices.
        cutoff: a cell is reachable iff its distance is ``<= cutoff``.
        check_every: rounds between convergence checks (each check syncs with the host once).
        max_chunk_elements: bound on ``rows * p * k`` edge candidates held at once.
    Returns:
        ``dist (q C)`` float64 on the graph's device, ``inf`` where unreachable.
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


def hop_edges(knn_idx: torch.Tensor, knn_cost: torch.Tensor, hops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b C k)`` edges -> the heads ``(b C E)`` of every walk of 1 .. ``hops`` edges from each
    cell (``E = k + k^2 + ... + k^hops``, walks of 1 edge first) and the edge costs along each walk
    (a list: ``(b C k)``, ``(b C k k)``, ...), so that a round can add them left to right."""
    num_videos, p, k = knn_idx.shape
    batch = torch.arange(num_videos, device=knn_idx.device)[:, None]
    heads, costs = [knn_idx], [knn_cost]
    for _ in range(hops - 1):  # a walk of h + 1 edges: one of h edges, then an edge from its head
        last = heads[-1].reshape(num_videos, -1)  # (b C*k^h)
        shape = (*heads[-1].shape, k)
        heads.append(knn_idx[batch, last].reshape(shape))
        costs.append(knn_cost[batch, last].reshape(shape))
    return torch.cat([h.reshape(num_videos, p, -1) for h in heads], 2), costs


def relax_rounds(knn_idx: torch.Tensor, knn_cost: torch.Tensor, video_idx: torch.Tensor, sources: torch.Tensor,
                 cutoff: float, rounds: int, hops: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`bounded_shortest_paths` in a fixed number of rounds and no host read at all.

    Each round relaxes every walk of 1 .. ``hops`` edges at once, adding the costs left to right
    (``(dist + c1) + c2``: float addition is monotone, so this is the same as ``hops`` rounds of one
    edge), so after ``rounds`` rounds every shortest path of up to ``rounds * hops`` edges has its
    exact length. Values above the cut-off are left to travel (a path within the cut-off has every
    prefix within it) and set to ``inf`` at the end.

    Returns ``dist (q C)`` float64 and ``settled``, a device bool: True when the last round changed
    no value within the cut-off (the fixed point: the result is exact), or when ``rounds * hops``
    reaches ``C - 1``. The caller reads ``settled`` with whatever else it reads from the device, and
    runs more rounds when it is False.
    """
    _, p, k = knn_idx.shape
    num_rows = sources.shape[0]
    device = knn_cost.device
    heads, costs = hop_edges(knn_idx, knn_cost, hops)  # (b C E), [(b C k), (b C k k), ...]
    costs = [c[video_idx] for c in costs]  # each row its own graph: (r p k), (r p k k), ...
    sizes = [c.numel() for c in costs]
    rows = torch.arange(num_rows, device=device)
    # Flat targets (row * p + head), walks of 1 edge for every row first, then of 2 edges, ...: each
    # block of candidates is contiguous, so a round is one add per walk length and one scatter.
    targets = (rows[:, None, None] * p + heads[video_idx])  # (r p E)
    targets = torch.cat([t.reshape(-1) for t in targets.split([c[0, 0].numel() for c in costs], 2)])
    dist = torch.full((num_rows, p), torch.inf, dtype=torch.float64, device=device)
    dist[rows, sources] = 0.0
    candidates = torch.empty(sum(sizes), dtype=torch.float64, device=device)
    views = [part.view(c.shape) for part, c in zip(candidates.split(sizes), costs)]  # (r p k), (r p k k), ...
    previous = dist
    for step in range(max(1, rounds)):
        walk = torch.add(dist[:, :, None], costs[0], out=views[0])
        for cost, view in zip(costs[1:], views[1:]):
            walk = torch.add(walk[..., None], cost, out=view)  # one more edge, added last
        if step == max(1, rounds) - 1:
            previous = dist.clone()
        dist.view(-1).scatter_reduce_(0, targets, candidates, reduce="amin", include_self=True)
    within = dist <= cutoff
    settled = torch.where(within, dist == previous, previous > cutoff).all()
    if rounds * hops >= p - 1:
        settled = torch.ones((), dtype=torch.bool, device=device)
    return dist.masked_fill(~within, torch.inf), settled


def closeness_torch(features: torch.Tensor, valid: torch.Tensor, video_idx: torch.Tensor, sources: torch.Tensor,
                    k: int, cutoff: float, rounds: int | None = None):
    """``G (q C)`` float32 on the features' device: ``1 - dist`` within the cut-off, 0 beyond.

    Args:
        features: ``(b C d)``; valid: ``(b C)`` bool; video_idx, sources: ``(q,)`` int64, the
            video and the cell of each source, all on one device and checked by the caller.
        rounds: None: relax to the fixed point, checking every few rounds (host syncs); a number:
            :func:`relax_rounds` (no host read), and the result is ``(G, settled)``.
    """
    if rounds is None:
        knn_idx, knn_cost = knn_graph_torch(features, k, valid)  # (b C k) each
        dist = bounded_shortest_paths(knn_idx, knn_cost, video_idx, sources, cutoff)  # (q C)
        return torch.where(dist <= cutoff, 1.0 - dist, 0.0).float()
    knn_idx, knn_cost = knn_graph_torch(features, k, valid, max_chunk_elements=1 << 26)  # few chunks: few launches
    dist, settled = relax_rounds(knn_idx, knn_cost, video_idx, sources, cutoff, rounds)
    return torch.where(dist <= cutoff, 1.0 - dist, 0.0).float(), settled
