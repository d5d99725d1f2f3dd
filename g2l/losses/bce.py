"""L_bce: the IoU regression of 2D-TAN (docs/method.md section 3).

    p_qc = sigmoid(10 * cos(s^u_q, m^u_c))
    L_bce = - mean over (q, c) of [ y_qc log p_qc + (1 - y_qc) log(1 - p_qc) ]

with ``y = clamp((IoU - t_min) / (t_max - t_min), 0, 1)`` and one mean over the valid cells of
every sentence in the batch (not a mean of per-sentence means). The term builds ``y`` itself from
the batch's plain IoU (``loss.iou_min`` / ``loss.iou_max`` are ``t_min`` / ``t_max``), so nothing
outside training needs them. Computed from the logits ``10 * cos`` (``IOU_LOGIT_SCALE``, the
model's score) for numerical stability; the value is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from g2l.losses.term import LossInputs, LossTerm
from g2l.models.grounding import IOU_LOGIT_SCALE


def scaled_iou(iou: torch.Tensor, iou_min: float, iou_max: float) -> torch.Tensor:
    """The target ``clamp((IoU - t_min) / (t_max - t_min), 0, 1)`` in float32, rounded as
    MMN's numpy target (``tests/reference/mmn.py``'s ``scale_iou``) rounds it: the bounds are float32 tensors filled on ``iou``'s device
    (no copy from the host), so that on CUDA too the division is a true division and not, as with a
    Python number, a product with its reciprocal."""
    iou = iou.float()
    low, width = iou.new_full((), iou_min), iou.new_full((), iou_max - iou_min)
    return ((iou - low) / width).clamp(0.0, 1.0)


class IoUBCELoss(LossTerm):
    def __init__(self, *, iou_min: float, iou_max: float):
        """``iou_min`` / ``iou_max``: t_min / t_max, the IoU mapped to a target of 0 and of 1."""
        super().__init__()
        self.iou_min, self.iou_max = iou_min, iou_max

    def forward(self, iou_cos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``iou_cos (q C)`` cosines, ``targets (q C)`` scaled IoU -> scalar."""
        return F.binary_cross_entropy_with_logits(IOU_LOGIT_SCALE * iou_cos, targets, reduction="mean")

    def term(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        targets = scaled_iou(inputs.iou_cells, self.iou_min, self.iou_max)  # (q C)
        return self(inputs.output.iou_cos, targets), {}
