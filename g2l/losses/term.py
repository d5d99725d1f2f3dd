"""What every loss term reads, and the small base class of a term (docs/method.md section 3, "Total").

A term is an ``nn.Module`` with a tensor-level ``forward`` (its formula, tested on its own) and
``term(inputs)``, which picks its tensors out of :class:`LossInputs` and returns its unweighted
value and its own diagnostics. ``GroundingLoss`` (combine.py) computes the inputs once per step,
weights each term by name and sums them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LossInputs:
    """One training step's model output and batch, with what several terms share, computed once."""

    output: object  # g2l.models.grounding.GroundingOutput
    batch: object  # g2l.data.dataset.Batch, on the output's device
    cell_start_idx: torch.Tensor  # (C,) start clip of each valid cell
    cell_end_idx: torch.Tensor  # (C,) end clip of each valid cell
    iou_cells: torch.Tensor  # (q C) IoU of each cell of v(j) with the ground truth of j
    positives: torch.Tensor  # (q k) the k cells of highest IoU; column 0 is g_j
    closeness: torch.Tensor | None  # (q C) geodesic closeness G to g_j, no gradient; None if no term needs it
    step: int  # the global step (seeds L_SSI's sampler)
    closeness_settled: torch.Tensor | None = None  # () bool on the device: the closeness is exact (torch kernels)
    settled_read: bool | None = None  # closeness_settled as read by a term with its own host read, if one did


class LossTerm(nn.Module):
    """A named term of the total loss. ``needs_closeness``: the combiner computes G for it."""

    needs_closeness = False

    def term(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-> (the unweighted scalar loss, diagnostics named ``stat_*``: no gradient, not summed)."""
        raise NotImplementedError
