"""L_bce: the IoU regression of 2D-TAN (docs/method.md section 3).

    p_qc = sigmoid(10 * cos(s^u_q, m^u_c))
    L_bce = - mean over (q, c) of [ y_qc log p_qc + (1 - y_qc) log(1 - p_qc) ]

with ``y = clamp((IoU - t_min) / (t_max - t_min), 0, 1)`` and one mean over the valid cells of
every sentence in the batch (not a mean of per-sentence means). Computed from the logits
``10 * cos`` for numerical stability; the value is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from g2l.losses.term import LossInputs, LossTerm


class IoUBCELoss(LossTerm):
    def forward(self, iou_cos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``iou_cos (q C)`` cosines, ``targets (q C)`` scaled IoU -> scalar."""
        return F.binary_cross_entropy_with_logits(10 * iou_cos, targets, reduction="mean")

    def term(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        targets = inputs.batch.targets[:, inputs.cell_start_idx, inputs.cell_end_idx]  # (q C)
        return self(inputs.output.iou_cos, targets), {}
