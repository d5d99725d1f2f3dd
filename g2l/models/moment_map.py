"""The sparse 2D moment map and its masked convolution stack (docs/method.md sections 1 and 2)."""

from __future__ import annotations

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


class MapEncoder(nn.Module):
    """L x [Conv2d(H, H, k) + BatchNorm2d + ReLU, times the mask weight], then two 1x1 heads.

    The first layer pads ``(k - 1) * L / 2`` and the rest pad 0, so the map keeps its size.
    Returns the contrastive branch ``m^c`` and the IoU branch ``m^u``, each ``(b d' t t)``.
    """

    def __init__(self, *, hidden_dim: int, joint_dim: int, kernel_size: int, num_layers: int, mask2d: torch.Tensor):
        super().__init__()
        padding = (kernel_size - 1) * num_layers // 2
        self.convs = nn.ModuleList(
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=padding if n == 0 else 0) for n in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(hidden_dim) for _ in range(num_layers))
        for n, weight in enumerate(_mask_weights(mask2d, kernel_size, num_layers)):
            self.register_buffer(f"mask_weight_{n}", weight, persistent=False)
        self.contrast_head = nn.Conv2d(hidden_dim, joint_dim, 1)
        self.iou_head = nn.Conv2d(hidden_dim, joint_dim, 1)

    def forward(self, map2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = map2d
        for n, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = torch.relu(norm(conv(x))) * getattr(self, f"mask_weight_{n}")
        return self.contrast_head(x), self.iou_head(x)  # (b d' t t) each
