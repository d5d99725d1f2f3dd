"""The sparse 2D moment map and its masked convolution stack (docs/method.md sections 1 and 2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from g2l.ops.spans import pooling_diagonals, pooling_mask


class SparseMaxPool(nn.Module):
    """Clip features ``(b d t)`` -> map ``(b d t t)``: cell ``(i, j)`` holds the max over clips i..j
    on the valid cells of the pooling counts, 0 elsewhere.

    Like MMN, a chain of 1-D max-pools (kernel 2, stride 1; each later group opens with a
    stride-doubling kernel 3, stride 2) produces one whole diagonal per step, written with one
    indexed assignment: the loop runs over pooling levels, never over cells.
    """

    def __init__(self, *, num_clips: int, pooling_counts: list[int]):
        super().__init__()
        self.num_clips = num_clips
        kernels = []
        for group, count in enumerate(pooling_counts):
            kernels += [(3, 2) if group > 0 and n == 0 else (2, 1) for n in range(count)]
        diagonals = pooling_diagonals(num_clips, pooling_counts)
        self.kernels = kernels[: len(diagonals)]
        self.register_buffer("mask2d", torch.from_numpy(pooling_mask(num_clips, pooling_counts)), persistent=False)
        for n, (start_idx, end_idx) in enumerate(diagonals):
            self.register_buffer(f"start_idx_{n}", torch.from_numpy(start_idx), persistent=False)
            self.register_buffer(f"end_idx_{n}", torch.from_numpy(end_idx), persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, d, t = clips.shape
        map2d = clips.new_zeros(b, d, t, t)
        diagonal = torch.arange(t, device=clips.device)
        map2d[:, :, diagonal, diagonal] = clips
        pooled = clips
        for n, (kernel, stride) in enumerate(self.kernels):
            pooled = F.max_pool1d(pooled, kernel, stride)
            map2d[:, :, getattr(self, f"start_idx_{n}"), getattr(self, f"end_idx_{n}")] = pooled
        return map2d  # (b d t t)


def _mask_weights(mask2d: torch.Tensor, kernel_size: int, num_layers: int) -> list[torch.Tensor]:
    """Per layer, 1 / (valid cells under the kernel) where that is > 0, else 0 (2D-TAN's padded mask)."""
    weights = []
    mask = mask2d[None, None].float()
    ones = torch.ones(1, 1, kernel_size, kernel_size)
    padding = (kernel_size - 1) * num_layers // 2
    for _ in range(num_layers):
        count = torch.round(F.conv2d(mask, ones, padding=padding))
        weight = torch.where(count > 0, 1.0 / count.clamp(min=1), torch.zeros_like(count))
        weights.append(weight[0, 0])
        mask = (count > 0).float()
        padding = 0
    return weights


@dataclass(frozen=True)
class _Rect:
    """Rows ``[top, bottom)`` and columns ``[left, right)`` of a layer's output, in map coordinates
    (cell ``(0, 0)`` of the input map is the origin; the padded layers reach below 0 and past ``t``)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)


def _window(x: torch.Tensor, box: _Rect, want: _Rect) -> torch.Tensor:
    """The part ``want`` of ``x (b d h w)``, which holds ``box``; zero where ``want`` leaves ``box``.

    ``F.pad`` with negative amounts crops, so one call both crops and zero-pads.
    """
    return F.pad(x, (box.left - want.left, want.right - box.right, box.top - want.top, want.bottom - box.bottom))


def _strips(support: torch.Tensor, offset: int, strip_rows: int) -> list[_Rect]:
    """Row strips whose union covers the nonzero cells of ``support (g g)``; ``offset`` maps its
    index 0 to map coordinates. Each strip spans the columns its own rows need."""
    rows = torch.nonzero(support.any(1)).flatten()
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    height = bottom - top
    count = max(1, round(height / strip_rows))
    bounds = [top + round(i * height / count) for i in range(count + 1)]
    rects = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        cols = torch.nonzero(support[a:b].any(0)).flatten()
        rects.append(_Rect(a - offset, b - offset, int(cols[0]) - offset, int(cols[-1]) + 1 - offset))
    return rects


class MapEncoder(nn.Module):
    """L x [Conv2d(H, H, k) + BatchNorm2d + ReLU, times the mask weight], then two 1x1 heads.

    The first layer pads ``(k - 1) * L / 2`` and the rest pad 0, so the map keeps its size.
    Returns the contrastive branch ``m^c`` and the IoU branch ``m^u``, each ``(b d' t t)``.

    The layers are computed cropped: the same outputs, batch-norm statistics and gradients as
    running every layer on its whole padded grid (as written above), while computing only what can
    reach a proposal (docs/method.md section 2, "cropped map"): layer ``n``'s output is multiplied
    by a weight that is zero outside the region ``D_n`` of cells within ``(n + 1) r``
    (``r = (k - 1) / 2``) of a valid cell, and its input is zero outside ``D_{n-1}``, so every cell
    outside ``D_n`` holds exactly the convolution's bias before batch norm. The cropped path
    convolves row strips that cover ``D_n`` and adds the constant cells' share to the batch-norm
    mean and variance in closed form. It also keeps oneDNN off its im2col fallback, which the
    first layer's wide padding forces on the whole grid. The whole-grid computation is a test
    reference (tests/reference/moment_map_full.py) that tests/models/test_moment_map.py holds this
    one equal to.
    """

    def __init__(self, *, hidden_dim: int, joint_dim: int, kernel_size: int, num_layers: int, mask2d: torch.Tensor,
                 strip_rows: int = 16):
        super().__init__()
        self.num_clips = int(mask2d.shape[-1])
        self.radius = (kernel_size - 1) // 2
        padding = (kernel_size - 1) * num_layers // 2
        self.convs = nn.ModuleList(
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=padding if n == 0 else 0) for n in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(hidden_dim) for _ in range(num_layers))
        weights = _mask_weights(mask2d, kernel_size, num_layers)
        for n, weight in enumerate(weights):
            self.register_buffer(f"mask_weight_{n}", weight, persistent=False)
        # Per layer: the grid side, the strips covering D_n, and their bounding box (map coordinates).
        self.grid_sizes = [int(w.shape[-1]) for w in weights]
        self.strips = []
        for n, weight in enumerate(weights):
            offset = (num_layers - 1 - n) * self.radius
            self.strips.append(_strips(weight > 0, offset, strip_rows))
        self.contrast_head = nn.Conv2d(hidden_dim, joint_dim, 1)
        self.iou_head = nn.Conv2d(hidden_dim, joint_dim, 1)

    def forward(self, map2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._layers_cropped(map2d)
        return self.contrast_head(x), self.iou_head(x)  # (b d' t t) each

    def _layers_cropped(self, map2d: torch.Tensor) -> torch.Tensor:
        r, t = self.radius, self.num_clips
        x, box = map2d, _Rect(0, t, 0, t)  # x holds `box` of the previous layer's output, zero elsewhere
        for n, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            rects = self.strips[n]
            outer = _Rect(min(q.top for q in rects), max(q.bottom for q in rects),
                          min(q.left for q in rects), max(q.right for q in rects))
            parts = [F.conv2d(_window(x, box, _Rect(q.top - r, q.bottom + r, q.left - r, q.right + r)), conv.weight,
                              conv.bias) for q in rects]  # (b H h_q w_q) each
            grid = self.grid_sizes[n]
            scale, shift = self._norm_affine(norm, conv, parts, x.shape[0] * grid * grid)
            offset = (len(self.convs) - 1 - n) * r  # map coordinate of grid index 0 is -offset
            out = []
            for q, part in zip(rects, parts):
                weight = getattr(self, f"mask_weight_{n}")[q.top + offset:q.bottom + offset, q.left + offset:q.right + offset]
                y = (torch.relu(part.to(scale.dtype) * scale + shift) * weight).to(part.dtype)
                out.append(_window(y, q, _Rect(q.top, q.bottom, outer.left, outer.right)))
            x, box = torch.cat(out, dim=2) if len(out) > 1 else out[0], outer  # (b H h w)
        return _window(x, box, _Rect(0, t, 0, t))  # the heads read the whole map: (b H t t)

    @staticmethod
    def _norm_affine(norm: nn.BatchNorm2d, conv: nn.Conv2d, parts: list[torch.Tensor], total: int):
        """Per-channel ``scale, shift`` (each ``(H 1 1)``, float32 or wider) of ``norm`` applied to the full grid.

        In training, the batch mean and (biased) variance run over all ``total`` cells per channel:
        the computed ``parts`` plus ``total - computed`` cells that each hold ``conv.bias``.
        Running statistics are updated as ``nn.BatchNorm2d`` does.
        """
        acc = torch.promote_types(parts[0].dtype, torch.float32)  # statistics in float32 at least
        if norm.training or norm.running_mean is None:
            computed = sum(p.shape[0] * p.shape[2] * p.shape[3] for p in parts)
            constant = total - computed
            bias = conv.bias.to(acc) if conv.bias is not None else parts[0].new_zeros(parts[0].shape[1], dtype=acc)
            mean = (sum(p.to(acc).sum((0, 2, 3)) for p in parts) + constant * bias) / total
            var = (sum(((p.to(acc) - mean[:, None, None]) ** 2).sum((0, 2, 3)) for p in parts)
                   + constant * (bias - mean) ** 2) / total
            if norm.training and norm.track_running_stats:
                with torch.no_grad():
                    norm.num_batches_tracked.add_(1)
                    momentum = (1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum)
                    norm.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                    norm.running_var.mul_(1 - momentum).add_(var.detach() * total / max(total - 1, 1), alpha=momentum)
        else:
            mean, var = norm.running_mean.to(acc), norm.running_var.to(acc)
        inv = torch.rsqrt(var + norm.eps)
        gamma = norm.weight.to(acc) if norm.weight is not None else torch.ones_like(inv)
        beta = norm.bias.to(acc) if norm.bias is not None else torch.zeros_like(inv)
        scale = gamma * inv
        return scale[:, None, None], (beta - mean * scale)[:, None, None]
