"""The geodesic closeness kernels of g2l/ops/geodesic.py reached the way the tests need them: one video
(a batch of one), and closeness on a kNN graph the test gives (the Numba Dijkstra or the torch
min-plus relaxation, without building the graph), so that both kernels can be compared on the same
graph. The library's entry points take a batch of features; these were its single-video and
given-graph functions, which nothing but the tests called."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from g2l.ops.geodesic import geodesic_closeness_batch
from g2l.ops.geodesic_numba import graph_batch_kernel
from g2l.ops.geodesic_torch import bounded_shortest_paths
from g2l.ops.threads import kernel_threads


def one_video_closeness(features, sources, k: int = 5, cutoff: float = 0.5, knn: str = "auto",
                        kernels: str = "numba"):
    """``G (s p)`` of one video's ``(p d)`` features to its ``(s,)`` sources: the batch form on a
    batch of one (same checks, same types out)."""
    return geodesic_closeness_batch(features[None], [sources], None, k, cutoff, knn, kernels)


def closeness_on_graph(knn_idx: np.ndarray, knn_cost: np.ndarray, sources: Sequence, cutoff: float = 0.5,
                       kernels: str = "numba") -> np.ndarray:
    """Bounded shortest-path closeness on the given ``(b p k)`` graph (indices, non-negative costs)
    from ``b`` arrays of source cells: ``(q C)`` float32, rows grouped video by video."""
    knn_idx = np.ascontiguousarray(knn_idx, dtype=np.int64)
    knn_cost = np.ascontiguousarray(knn_cost, dtype=np.float64)
    counts = [len(src) for src in sources]
    flat = np.concatenate([np.asarray(src, dtype=np.int64).reshape(-1) for src in sources])  # (q,)
    if kernels == "torch":
        video_idx = torch.from_numpy(np.repeat(np.arange(len(sources)), counts))
        dist = bounded_shortest_paths(torch.from_numpy(knn_idx), torch.from_numpy(knn_cost), video_idx,
                                      torch.from_numpy(flat), float(cutoff))  # (q C)
        return torch.where(dist <= cutoff, 1.0 - dist, 0.0).float().numpy()
    out = np.zeros((flat.size, knn_idx.shape[1]), dtype=np.float32)
    with kernel_threads():
        graph_batch_kernel(knn_idx, knn_cost, flat, np.cumsum([0, *counts]).astype(np.int64), float(cutoff), out)
    return out
