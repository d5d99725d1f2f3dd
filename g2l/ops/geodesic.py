"""Geodesic closeness G of moment cells to the ground-truth cell (docs/method.md section 3).

Per video, without gradient, over the video's ``C`` valid cells with L2-normalised contrastive
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

Two sets of kernels, chosen by ``kernels=`` (default ``"numba"``), give the same values on the same
kNN graph. ``kernels="numba"`` (:mod:`g2l.ops.geodesic_numba`) runs a compiled bounded Dijkstra on
the CPU, one parallel task per video, with two ways to obtain the kNN rows:

* ``knn="lazy"`` (CPU): a Dijkstra only follows the edges of the cells it settles, so each
  settled cell's kNN row is computed on demand inside the kernel and cached across the sources
  of the same video. A row costs one dot product against every cell (``C d``) plus a partial
  top-k, or, once some rows are known, far fewer: triangle-inequality bounds from "pivot" rows
  rule out most candidates exactly (see the comment above ``geodesic_numba._MAX_PIVOTS``). With few reachable
  cells (unstructured features) the cost is a handful of rows; when most of the map lies within
  ``cutoff`` (smooth, max-pooled map features) it is a fraction of one dense Gram matrix.
* ``knn="dense"``: the whole Gram matrix per video with torch on the features' device (a GPU
  in training), exact top-k with the same tie rule, then the Numba Dijkstra on the small
  ``(b C k)`` graph copied to the CPU.

``kernels="torch"`` (:mod:`g2l.ops.geodesic_torch`) keeps everything on the features' device:
the same dense kNN graph, then a min-plus (Bellman-Ford) relaxation batched over every (video,
source) row of the batch; only the small checked source indices and mask come from the host.

``knn="auto"`` picks dense for CUDA tensors and for the torch kernels, lazy otherwise. Lazy and
dense produce the same kNN graph up to float round-off in the similarities (a kNN choice can
differ only where two candidates' similarities are within a few ulps of each other).

Entry points: :func:`geodesic_closeness_batch` (a batch of videos, any sources per video; one video
is a batch of one), :func:`geodesic_closeness_rows` (the training loss's form: one source per row)
and :func:`knn_graph` (the dense graph alone). The independent reference (numpy kNN graph, scipy's
Dijkstra) is tests/reference/geodesic_closeness.py.

Shapes use the axis glossary of :mod:`g2l`: ``b`` videos, ``C`` cells per video (here the valid
cells of the ``(t t)`` map, gathered in any fixed order), ``d`` channels, ``q`` sources (sentences)
across the batch, ``k`` neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from g2l.ops.geodesic_numba import graph_batch_kernel, lazy_batch_kernel
from g2l.ops.geodesic_torch import closeness_torch, knn_graph_torch
from g2l.ops.threads import kernel_threads

__all__ = ["geodesic_closeness_batch", "geodesic_closeness_rows", "knn_graph"]


# ---------------------------------------------------------------------------------------------
# Input checking and conversion
# ---------------------------------------------------------------------------------------------


def _check_k_cutoff(k: int, cutoff: float) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"geodesic closeness: k must be a positive integer, got {k!r}.")
    if not np.isfinite(cutoff) or cutoff < 0:
        raise ValueError(f"geodesic closeness: cutoff must be a finite number >= 0, got {cutoff!r}.")


def _sources_to_host(sources: Sequence) -> Sequence:
    """Integer index tensors of at most one dimension (e.g. on a GPU) come to the host in one copy,
    not one per video; anything else is left to :func:`_pack_sources` to check item by item."""
    tensors = [src for src in sources if isinstance(src, torch.Tensor)]
    if len(tensors) != len(sources) or not tensors or any(
            src.ndim > 1 or src.dtype.is_floating_point or src.dtype.is_complex or src.dtype == torch.bool
            for src in tensors):
        return sources
    lengths = [src.numel() for src in tensors]
    flat = torch.cat([src.detach().reshape(-1) for src in tensors]).cpu().numpy()
    return [part.reshape(src.shape) for part, src in zip(np.split(flat, np.cumsum(lengths)[:-1]), tensors)]


def _pack_sources(sources: Sequence, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """List of ``b`` 1-D index arrays -> ``(q,)`` int64 indices and ``(b+1,)`` offsets, checked."""
    num_videos, p = valid.shape
    if len(sources) != num_videos:
        raise ValueError(
            f"geodesic closeness: got {len(sources)} source arrays for {num_videos} videos; "
            "pass one 1-D array of source cell indices per video."
        )
    sources = _sources_to_host(sources)
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


def _check_kernels(kernels: str, knn: str) -> None:
    if kernels not in ("numba", "torch"):
        raise ValueError(f"geodesic closeness: kernels must be 'numba' or 'torch', got {kernels!r}.")
    if knn not in ("auto", "lazy", "dense"):
        raise ValueError(f"geodesic closeness: knn must be 'auto', 'lazy' or 'dense', got {knn!r}.")
    if kernels == "torch" and knn == "lazy":
        raise ValueError("geodesic closeness: knn='lazy' is a Numba strategy; with kernels='torch' pass "
                         "knn='dense' or 'auto'.")


def _closeness_torch(x, is_torch: bool, valid_np: np.ndarray, flat: np.ndarray, offsets: np.ndarray,
                     k: int, cutoff: float):
    """The torch kernels on the videos that have sources; the features never leave their device
    (only the small checked source indices and mask travel to it)."""
    x = x if is_torch else torch.from_numpy(np.ascontiguousarray(x))
    num_videos, p, _ = x.shape
    counts = np.diff(offsets)
    with_sources = np.nonzero(counts > 0)[0]
    if flat.size == 0:
        out = torch.zeros((0, p), dtype=torch.float32, device=x.device)
    else:
        index = torch.as_tensor(with_sources, device=x.device)
        video_idx = torch.as_tensor(np.repeat(np.arange(with_sources.size), counts[with_sources]), device=x.device)
        valid = torch.as_tensor(valid_np[with_sources], device=x.device)
        out = closeness_torch(x[index], valid, video_idx, torch.as_tensor(flat, device=x.device), k, float(cutoff))
    return out if is_torch else out.numpy()


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def knn_graph(features, k: int = 5, valid=None, max_chunk_elements: int = 1 << 24):
    """Dense exact kNN graph per video, computed with torch on the features' device.

    Args:
        features: ``(b C d)`` tensor (any float dtype; normalised here in float32).
        k: neighbours per cell.
        valid: optional ``(b C)`` bool mask; invalid cells are never neighbours.
        max_chunk_elements: bound on ``videos * C * C`` similarities held at once.
    Returns:
        ``knn_idx (b C k)`` int64 and ``knn_cost (b C k)`` float64 numpy arrays (on the CPU),
        rows in decreasing similarity, ties broken by the lower index; rows of invalid cells are
        filled but never reached.
    """
    _check_k_cutoff(k, 0.0)
    x = features.detach() if isinstance(features, torch.Tensor) else torch.as_tensor(features)
    if x.ndim != 3:
        raise ValueError(f"knn_graph: features must be (b C d), got shape {tuple(x.shape)}.")
    num_videos, p, _ = x.shape
    valid_np = _valid_mask(valid, num_videos, p)
    if (valid_np.sum(axis=1) <= k).any():
        raise ValueError(f"knn_graph: k={k} neighbours need more than k valid cells in every video.")
    valid_t = torch.as_tensor(valid_np, device=x.device)
    knn_idx, knn_cost = knn_graph_torch(x, k, valid_t, max_chunk_elements)
    return knn_idx.cpu().numpy(), knn_cost.cpu().numpy()


def geodesic_closeness_batch(features, sources: Sequence, valid=None, k: int = 5,
                             cutoff: float = 0.5, knn: str = "auto", kernels: str = "numba"):
    """Geodesic closeness of every cell to each source, for a batch of videos in one call.

    Args:
        features: ``(b C d)`` cell features (torch tensor or numpy array); rows are normalised
            here; no gradient flows.
        sources: ``b`` 1-D integer arrays (or tensors), video v's source cells ``(s_v,)``
            indexing its ``C`` cells, e.g. each sentence's best cell ``g_j``.
        valid: optional ``(b C)`` bool mask of the cells that exist (default: all); invalid
            cells are not in the graph and get 0.
        k: neighbours per cell; cutoff: path-length bound (reachable iff ``dist <= cutoff``).
        knn: ``"lazy"`` (Numba, on the CPU, kNN rows on demand), ``"dense"`` (torch Gram matrix
            on the features' device) or ``"auto"`` (dense on CUDA or with torch kernels, lazy
            otherwise).
        kernels: ``"numba"`` (bounded Dijkstra on the CPU) or ``"torch"`` (dense kNN graph and
            min-plus relaxation batched over every source, on the features' device; numpy input
            runs on the CPU). Both give the same values for the same kNN graph.
    Returns:
        ``(q C)`` closeness, ``q = sum_v s_v``, rows grouped video by video in the order given:
        a float32 torch tensor on the features' device for tensor input, else a numpy array.
    The Numba kernel runs one task per video in parallel over ``numba.get_num_threads()``
    threads; results do not depend on the thread count.
    """
    _check_k_cutoff(k, cutoff)
    _check_kernels(kernels, knn)
    x, is_torch = _as_features(features)
    if x.ndim != 3:
        raise ValueError(f"geodesic closeness: batch features must be (b C d), got shape {tuple(x.shape)}.")
    num_videos, p, _ = x.shape
    valid_np = _valid_mask(valid, num_videos, p)
    flat, offsets = _pack_sources(sources, valid_np)
    _check_enough_cells(valid_np, offsets, k)
    if kernels == "torch":
        return _closeness_torch(x, is_torch, valid_np, flat, offsets, k, cutoff)
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
                graph_batch_kernel(knn_idx, knn_cost, flat, sub_offsets.astype(np.int64), float(cutoff), out)
        else:
            x_np = x.float().cpu().numpy() if is_torch else x
            x_np = np.ascontiguousarray(x_np, dtype=np.float32)  # (b C d), normalised in the kernel
            with kernel_threads():
                lazy_batch_kernel(x_np, valid_np, flat, offsets, int(k), float(cutoff), out)
    if is_torch:
        return torch.from_numpy(out).to(x.device)
    return out


def geodesic_closeness_rows(features: torch.Tensor, source_video: torch.Tensor, source_cell: torch.Tensor,
                            k: int = 5, cutoff: float = 0.5, kernels: str = "numba") -> torch.Tensor:
    """Closeness to one source per row, the training loss's form: row r holds every cell of video
    ``source_video[r]`` against its cell ``source_cell[r]`` (each sentence's g_j).

    Args:
        features: ``(b C d)`` tensor, every cell valid (the map's valid cells); no gradient flows.
        source_video, source_cell: ``(q,)`` int64 on the features' device.
        k, cutoff: as in :func:`geodesic_closeness_batch`.
        kernels: ``"torch"`` keeps everything on the device and reads none of its values on the host
            (the caller guarantees indices in range; only the relaxation's convergence checks sync);
            ``"numba"`` copies the indices and features to the CPU, checked as in the batch form.
    Returns:
        ``(q C)`` float32 on the features' device, in the rows' order.
    """
    _check_k_cutoff(k, cutoff)
    _check_kernels(kernels, "auto")
    num_videos, p, _ = features.shape
    if p <= k:
        raise ValueError(f"geodesic closeness: k={k} neighbours need more than k cells, but videos have {p}; lower k.")
    if kernels == "torch":
        valid = torch.ones((num_videos, p), dtype=torch.bool, device=features.device)
        return closeness_torch(features.detach(), valid, source_video, source_cell, k, float(cutoff))
    video, cell = source_video.cpu().numpy(), source_cell.cpu().numpy()
    order = np.argsort(video, kind="stable")  # rows grouped video by video, as the batch form returns them
    grouped = geodesic_closeness_batch(features, [cell[video == v] for v in range(num_videos)], k=k, cutoff=cutoff)
    out = torch.empty_like(grouped)
    out[torch.as_tensor(order, device=grouped.device)] = grouped
    return out

