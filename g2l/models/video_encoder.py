"""Video encoder: pre-clip features -> clip features (docs/method.md section 2)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class VideoEncoder(nn.Module):
    """Conv1d(F -> H, kernel 1), ReLU, AvgPool1d(kernel = stride = P / N): ``(b p F) -> (b H t)``."""

    def __init__(self, *, feature_dim: int, hidden_dim: int, num_pre_clips: int, num_clips: int):
        super().__init__()
        if num_pre_clips % num_clips:
            raise ValueError(f"num_pre_clips ({num_pre_clips}) must be a multiple of num_clips ({num_clips})")
        self.proj = nn.Conv1d(feature_dim, hidden_dim, kernel_size=1)
        self.pool = nn.AvgPool1d(num_pre_clips // num_clips, num_pre_clips // num_clips)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = rearrange(features, "b p f -> b f p")
        return self.pool(torch.relu(self.proj(x)))  # (b d t)
