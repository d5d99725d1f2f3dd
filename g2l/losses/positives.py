"""Positive cells, sentence-sentence overlap and the IoU thresholds shared by the contrastive losses."""

from __future__ import annotations

import torch

# A cell of a sentence's own video whose IoU with the ground truth is below NEGATIVE_IOU is a
# negative of L_s and L_GCL (MMN's contrastive loss; docs/method.md section 3, L_s and L_GCL); the
# cells at or above it are neither pushed nor (unless positives) pulled. A positive below it is
# "temporally wrong" (the stat_gcl_positives_iou_below_0.5 diagnostic).
NEGATIVE_IOU = 0.5
# Two sentences of one video whose ground truths overlap with IoU >= SAME_MOMENT_IOU describe the same
# moment, so neither is a negative of the other in L_v (MMN's contrastive loss; docs/method.md section 3, L_v).
SAME_MOMENT_IOU = 0.5
# Neither is a setting: MMN and G2L fix both at 0.5 for every dataset, and the IoU a cell needs to
# count as the moment is what eval.iou_thresholds measures, not what training pushes apart.


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
    is below ``NEGATIVE_IOU`` (temporally wrong moments the loss pulls); 0 when there are none."""
    with torch.no_grad():
        extra = valid & (idx != gt_cell[:, None])
        wrong = (iou_cells.gather(1, idx) < NEGATIVE_IOU) & extra
        return wrong.sum().float() / extra.sum().clamp(min=1).float()
