"""Positive cells and sentence-sentence overlap, shared by the contrastive losses."""

from __future__ import annotations

import torch


def positive_cells(iou_cells: torch.Tensor, num_positives: int) -> torch.Tensor:
    """``(q C)`` IoU of each sentence's ground truth with its video's valid cells -> ``(q k)`` indices
    of the ``k`` highest-IoU cells (ties: the first cell in row-major order)."""
    order = torch.sort(iou_cells, dim=1, descending=True, stable=True).indices
    return order[:, :num_positives]


def window_iou(windows_s: torch.Tensor) -> torch.Tensor:
    """``(q 2)`` windows -> ``(q q)`` IoU (intersection over hull)."""
    starts, ends = windows_s[:, 0], windows_s[:, 1]
    inter = torch.minimum(ends[:, None], ends[None]) - torch.maximum(starts[:, None], starts[None])
    hull = torch.maximum(ends[:, None], ends[None]) - torch.minimum(starts[:, None], starts[None])
    return inter.clamp(min=0) / hull.clamp(min=1e-12)


def wrong_positive_share(idx: torch.Tensor, valid: torch.Tensor, iou_cells: torch.Tensor,
                         gt_cell: torch.Tensor) -> torch.Tensor:
    """Diagnostic, no gradient: of a geodesic contrast's ``(q k)`` positives ``idx`` (``valid`` the
    picks that count), the share of those other than g_j ``(q,)`` whose IoU with the ground truth
    is below 0.5 (temporally wrong moments the loss pulls); 0 when there are none."""
    with torch.no_grad():
        extra = valid & (idx != gt_cell[:, None])
        wrong = (iou_cells.gather(1, idx) < 0.5) & extra
        return wrong.sum().float() / extra.sum().clamp(min=1).float()
