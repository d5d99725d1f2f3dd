"""The map encoder computed the way 2D-TAN and MMN write it: every layer on its whole padded grid,
``L x [Conv2d + BatchNorm2d + ReLU, times the mask weight]``, then the two 1x1 heads (docs/method.md
section 2; g2l's ``model.map_compute: full`` before the model kept only the cropped computation).
g2l/models/moment_map.py's ``MapEncoder`` computes only the cells that can reach a proposal and must
give the same outputs, batch-norm statistics (batch and running) and gradients:
tests/models/test_moment_map.py holds it to this, and tests/engine/test_precision.py runs bf16
through it. Test code only: nothing in g2l or bench imports it.
"""

from __future__ import annotations

import torch
from torch import nn

from g2l.models.moment_map import MapEncoder


class FullMapEncoder(nn.Module):
    """``encoder``'s own layers, norms, mask weights and heads (its parameters and statistics, not a
    copy), computed on the whole padded grid: ``(b H t t)`` map -> two ``(b d' t t)`` branches."""

    def __init__(self, encoder: MapEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, map2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encoder
        x = map2d
        for n, (conv, norm) in enumerate(zip(e.convs, e.norms)):
            x = torch.relu(norm(conv(x))) * getattr(e, f"mask_weight_{n}")  # (b H g_n g_n), back to t x t at the end
        return e.contrast_head(x), e.iou_head(x)
