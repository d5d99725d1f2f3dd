"""L_GCL: the geodesic-guided contrastive loss of G2L (docs/method.md section 3); replaces L_s.

Notation for sentence j of video v(j): ``s_j`` its normalised contrastive feature, ``m_c`` the
normalised contrastive feature of cell c, ``cos_jc = cos(s_j, m_c)``, ``g_j`` the cell of highest
IoU with the ground truth (``positives[:, 0]``), ``G_jc`` the geodesic closeness of cell c of v(j)
to g_j (1 at g_j, ``1 - dist`` within the cut-off, 0 beyond; no gradient), ``G'`` = G with its 1s
set to 0, ``IoU_jc`` the IoU of cell c with the ground truth, ``tau`` the temperature.

    P_j      = g_j and the ``num_positives - 1`` other cells of largest G_j with G_jc > 0,
               weights w_jp = G_jp / sum_{p' in P_j} G_jp'
    z_jp     = (cos_jp - margin) / tau                                           (p in P_j)
    N_j^same = cells of v(j) with IoU_jc < 0.5, not in P_j, logit n_jc = cos_jc / tau + log(1 + G'_jc)
               (near-misses on the manifold count 1 + G' times)
    N_j^oth  = every valid cell of every other video in the batch, logit cos_jc / tau
    D_j      = sum_{p in P_j} exp(z_jp) + sum_{N^same} exp(n_jc) + sum_{N^oth} exp(cos_jc / tau)
    L_j      = - sum_{p in P_j} w_jp * ( z_jp - log D_j )
    L_GCL    = mean over sentences j of L_j

With ``num_positives = 1`` (G2L as configured) the form is MMN's L_s with geodesic hard-negative
weights (and, unlike L_s, same-video cells with IoU >= 0.5 are neither pulled nor pushed); with 5
it is the paper's. Every log-sum is a logsumexp. The other forms the ablation tried (an IoU floor
for positives, raw weights, MIL-NCE, no margin, a moment-to-moment push, 1 - G' negatives) are at
git tag ``ablation-2026-12``; the authors' released loss is ``gcl_authors.py``.
"""

from __future__ import annotations

import torch

from g2l.losses.positives import NEGATIVE_IOU, wrong_positive_share
from g2l.losses.term import LossInputs, LossTerm


class GeodesicContrastLoss(LossTerm):
    needs_closeness = True

    def __init__(self, *, margin: float, tau: float, num_positives: int = 1, negative_iou: float = NEGATIVE_IOU):
        super().__init__()
        self.margin, self.tau, self.num_positives, self.negative_iou = margin, tau, num_positives, negative_iou

    def select_positives(self, closeness: torch.Tensor, gt_cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q C)`` G and ``(q,)`` g_j -> ``(q k)`` positive cell indices, g_j first, and a ``(q k)``
        mask of the picks that count (G > 0)."""
        k = min(self.num_positives, closeness.shape[1])
        eligible = closeness.clone()
        rows = torch.arange(closeness.shape[0], device=closeness.device)
        eligible[rows, gt_cell] = 2.0  # g_j always, and first (G <= 1 elsewhere)
        top_g, top_idx = torch.topk(eligible, k, dim=1)
        return top_idx, top_g > 0

    def forward(
        self,
        cell_contrast: torch.Tensor,  # (b C d), normalised
        sentence_contrast: torch.Tensor,  # (q d), normalised
        sentence_video: torch.Tensor,  # (q,)
        positives: torch.Tensor,  # (q k) cells by IoU; column 0 is g_j
        iou_cells: torch.Tensor,  # (q C)
        closeness: torch.Tensor,  # (q C) G, no gradient
    ) -> torch.Tensor:
        closeness = closeness.detach().to(cell_contrast.dtype)
        cos_all = torch.einsum("qd,bcd->qbc", sentence_contrast, cell_contrast)  # (q b C)
        rows = torch.arange(sentence_contrast.shape[0], device=cos_all.device)
        cos_own = cos_all[rows, sentence_video]  # (q C)
        own_video = torch.nn.functional.one_hot(sentence_video, cell_contrast.shape[0]).bool()  # (q b)
        g_prime = torch.where(closeness >= 1, torch.zeros_like(closeness), closeness)
        pos_idx, pos_valid = self.select_positives(closeness, positives[:, 0])  # (q k)

        pos_g = closeness.gather(1, pos_idx).masked_fill(~pos_valid, 0.0)
        pos_weight = pos_g / pos_g.sum(dim=1, keepdim=True).clamp(min=1e-12)  # (q k)
        pos_logits = (cos_own.gather(1, pos_idx) - self.margin) / self.tau  # (q k)
        pos_logits_masked = pos_logits.masked_fill(~pos_valid, float("-inf"))

        in_pos = torch.zeros_like(cos_own, dtype=torch.bool).scatter(1, pos_idx, pos_valid)  # (q C)
        same_neg = (iou_cells < self.negative_iou) & ~in_pos
        same_logits = (cos_own / self.tau + torch.log1p(g_prime)).masked_fill(~same_neg, float("-inf"))  # (q C)
        other_logits = (cos_all / self.tau).masked_fill(own_video[:, :, None], float("-inf")).flatten(1)
        log_negatives = torch.logsumexp(torch.cat([same_logits, other_logits], dim=1), dim=1)  # (q,)
        log_denominator = torch.logaddexp(torch.logsumexp(pos_logits_masked, dim=1), log_negatives)
        per_positive = pos_logits - log_denominator[:, None]  # (q k)
        per_sentence = -(pos_weight * torch.where(pos_valid, per_positive, torch.zeros_like(per_positive))).sum(dim=1)
        return per_sentence.mean()

    def term(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out, gt_cell = inputs.output, inputs.positives[:, 0]
        loss = self(out.cell_contrast, out.sentence_contrast, inputs.batch.sentence_video, inputs.positives,
                    inputs.iou_cells, inputs.closeness)
        idx, valid = self.select_positives(inputs.closeness.detach(), gt_cell)
        return loss, {"stat_gcl_positives_iou_below_0.5": wrong_positive_share(idx, valid, inputs.iou_cells, gt_cell)}
