"""L_GCL as the authors released it (``loss_hard_sent`` of their code), exactly, with logsumexp
instead of their overflowing ``log(sum(exp(.)))`` (docs/method.md sections 3 and 5).
``loss.sentence_contrast: gcl_authors``; not the default, because it is not the method as written.

Notation as in gcl.py (``G``, ``G'``, ``g_j``, ``cos_jc``, ``tau``):

    P_j      = the ``num_positives`` cells of largest G_j (g_j among them; an unreachable pick has
               G = 0 and still counts), logit  l+_jp = G_jp * exp(cos_jp) / tau   (no margin)
    same     = every cell c of v(j):  l_jc = exp(cos_jc) (1 + G'_jc) exp(cos(m_{g_j}, m_c)) / tau
               if IoU_jc < 0.5, else 0 (enters the sum as exp(0) = 1)
    other    = every cell n of the other videos: c = cos_jn, q = 1000 softmax_n(c_j.),
               u = cos(m_{g_j}, m_n), q-bar and u-bar the means of q and u over all the sentences
               of v(j) and all cells n, w = [q > q-bar] u + [u > u-bar] q,  l_jn = c w / tau
    L_GCL = -(1 / sum_j |P_j|) sum_j sum_{p in P_j} [ l+_jp - log( sum_{p'} exp(l+_jp')
                                                      + sum_c exp(l_jc) + sum_n exp(l_jn) + 1e-6 ) ]

Gradients flow through every cosine (the softmax weights q and u included), as in their code; G
never carries gradient.
"""

from __future__ import annotations

import math

import torch

from g2l.losses.positives import NEGATIVE_IOU, wrong_positive_share
from g2l.losses.term import LossInputs, LossTerm


class AuthorsGeodesicContrastLoss(LossTerm):
    needs_closeness = True

    def __init__(self, *, tau: float, num_positives: int = 5, negative_iou: float = NEGATIVE_IOU):
        super().__init__()
        self.tau, self.num_positives, self.negative_iou = tau, num_positives, negative_iou

    def select_positives(self, closeness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q C)`` G -> ``(q k)`` the cells of largest G and a ``(q k)`` mask: every pick counts."""
        top_g, top_idx = torch.topk(closeness, min(self.num_positives, closeness.shape[1]), dim=1)
        return top_idx, torch.ones_like(top_g, dtype=torch.bool)

    def forward(
        self,
        cell_contrast: torch.Tensor,  # (b C d), normalised
        sentence_contrast: torch.Tensor,  # (q d), normalised
        sentence_video: torch.Tensor,  # (q,)
        positives: torch.Tensor,  # (q k) cells by IoU; column 0 is g_j
        iou_cells: torch.Tensor,  # (q C)
        closeness: torch.Tensor,  # (q C) G, no gradient
    ) -> torch.Tensor:
        tau = self.tau
        closeness = closeness.detach().to(cell_contrast.dtype)
        rows = torch.arange(sentence_contrast.shape[0], device=cell_contrast.device)
        cos_all = torch.einsum("qd,bcd->qbc", sentence_contrast, cell_contrast)  # (q b C)
        cos_own = cos_all[rows, sentence_video]  # (q C)
        gt_features = cell_contrast[sentence_video, positives[:, 0]]  # (q d), m_{g_j}
        gt_cos = torch.einsum("qd,bcd->qbc", gt_features, cell_contrast)  # (q b C) cos(m_{g_j}, m)
        own_video = torch.nn.functional.one_hot(sentence_video, cell_contrast.shape[0]).bool()  # (q b)
        g_prime = torch.where(closeness >= 1, torch.zeros_like(closeness), closeness)
        pos_idx, _ = self.select_positives(closeness)  # (q k)

        pos_logits = closeness.gather(1, pos_idx) * torch.exp(cos_own.gather(1, pos_idx)) / tau  # (q k)
        same_logits = torch.exp(cos_own) * (1 + g_prime) * torch.exp(gt_cos[rows, sentence_video]) / tau
        same_logits = torch.where(iou_cells < self.negative_iou, same_logits, torch.zeros_like(same_logits))  # (q C)
        # Other videos: per sentence, the cells of the other videos; q-bar, u-bar per video.
        other = ~own_video[:, :, None].expand_as(cos_all)  # (q b C)
        c = cos_all.masked_fill(~other, float("-inf")).flatten(1)  # (q b*C)
        u = gt_cos.flatten(1)
        other_flat = other.flatten(1)
        if own_video.shape[1] == 1:  # one video: no other-video negatives
            other_logits = c.new_zeros((c.shape[0], 0))
        else:
            qs = 1000 * torch.softmax(c, dim=1)  # 0 on own-video cells
            video_onehot = own_video.to(cos_all.dtype)  # (q b): row j has a 1 at v(j)
            entries = video_onehot.T @ other_flat.sum(1).to(cos_all.dtype)  # (b,) entries of each video's matrix
            q_bar = (video_onehot.T @ qs.sum(1)) / entries.clamp(min=1)  # (b,)
            u_bar = (video_onehot.T @ torch.where(other_flat, u, torch.zeros_like(u)).sum(1)) / entries.clamp(min=1)
            q_bar_row, u_bar_row = q_bar[sentence_video][:, None], u_bar[sentence_video][:, None]
            weight = (qs > q_bar_row).to(qs.dtype) * u + (u > u_bar_row).to(u.dtype) * qs
            other_logits = (cos_all.flatten(1) * weight / tau).masked_fill(~other_flat, float("-inf"))
        eps = torch.full_like(pos_logits[:, :1], math.log(1e-6))
        log_denominator = torch.logsumexp(torch.cat([pos_logits, same_logits, other_logits, eps], dim=1), dim=1)
        return -(pos_logits - log_denominator[:, None]).mean()

    def term(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out, gt_cell = inputs.output, inputs.positives[:, 0]
        loss = self(out.cell_contrast, out.sentence_contrast, inputs.batch.sentence_video, inputs.positives,
                    inputs.iou_cells, inputs.closeness)
        idx, valid = self.select_positives(inputs.closeness.detach())
        return loss, {"stat_gcl_positives_iou_below_0.5": wrong_positive_share(idx, valid, inputs.iou_cells, gt_cell)}
