"""L_GCL: the geodesic-guided contrastive loss of G2L (METHOD.md section 3); replaces L_s.

For sentence j of video v(j), with geodesic closeness ``G_j (C,)`` of its video's valid cells to
its ground-truth cell g_j (1 at g_j, ``1 - dist`` within the cut-off, 0 beyond):

    P_j      = the ``num_positives`` cells with the largest G_j (and G_j > 0), weights
               w_jp = G_jp / sum_{p' in P_j} G_jp'   ("normalised", the default), or
               w_jp = G_jp                           ("raw": g_j keeps weight 1, neighbours add)
    N_j^same = cells of v(j) with IoU(c, gt_j) < 0.5, not in P_j, each weighted 1 + G'_jc
               (G' is G with its 1s set to 0: hard near-misses on the manifold count more)
    N_j^oth  = every valid cell of every other video in the batch, weight 1
    z_jc     = (cos(s^c_j, m^c_c) - margin * [c in P_j]) / tau

    L_GCL = mean_j  - sum_{p in P_j} w_jp * [ z_jp - log( sum_{p' in P_j} exp(z_jp')
                                                       + sum_{c in N_j^same} (1 + G'_jc) exp(z_jc)
                                                       + sum_{c in N_j^oth} exp(z_jc) ) ]

a multi-positive InfoNCE in which semantically close moments are pulled towards the sentence
along the geodesic and hard near-misses are pushed harder. Same-video cells with IoU >= 0.5
that are not positives are neither pulled nor pushed. The weights are computed without
gradient (G comes from detached features); the log-sum is a logsumexp with log-weights.

(The authors' released code computes positive logits as ``G * exp(cos) / tau`` and reweights
other-video negatives by a thresholded softmax; that form is not the method as written and is
not offered here.)
"""

from __future__ import annotations

import torch
from torch import nn


class GeodesicContrastLoss(nn.Module):
    needs_closeness = True

    def __init__(self, *, margin: float, tau: float, num_positives: int = 5, negative_iou: float = 0.5,
                 positive_weights: str = "normalised"):
        super().__init__()
        if positive_weights not in ("normalised", "raw"):
            raise ValueError(f"positive_weights must be 'normalised' or 'raw', got {positive_weights!r}")
        self.margin, self.tau, self.positive_weights = margin, tau, positive_weights
        self.num_positives, self.negative_iou = num_positives, negative_iou

    def forward(
        self,
        cell_contrast: torch.Tensor,  # (b C d), normalised
        sentence_contrast: torch.Tensor,  # (q d), normalised
        sentence_video: torch.Tensor,  # (q,)
        positives: torch.Tensor,  # (q k) unused beyond g_j, which the closeness was computed from
        iou_cells: torch.Tensor,  # (q C)
        closeness: torch.Tensor,  # (q C) G, no gradient
    ) -> torch.Tensor:
        q = sentence_contrast.shape[0]
        b = cell_contrast.shape[0]
        closeness = closeness.detach().to(cell_contrast.dtype)
        cos_all = torch.einsum("qd,bcd->qbc", sentence_contrast, cell_contrast)  # (q b C)
        rows = torch.arange(q, device=cos_all.device)
        cos_own = cos_all[rows, sentence_video]  # (q C)

        top_g, top_idx = torch.topk(closeness, min(self.num_positives, closeness.shape[1]), dim=1)  # (q k)
        is_pos = top_g > 0
        pos_weight = torch.where(is_pos, top_g, torch.zeros_like(top_g))
        if self.positive_weights == "normalised":
            pos_weight = pos_weight / pos_weight.sum(dim=1, keepdim=True).clamp(min=1e-12)  # (q k)
        pos_logits = (cos_own.gather(1, top_idx) - self.margin) / self.tau  # (q k)
        pos_logits_masked = pos_logits.masked_fill(~is_pos, float("-inf"))

        in_pos = torch.zeros_like(cos_own, dtype=torch.bool).scatter(1, top_idx, is_pos)  # (q C)
        same_neg = (iou_cells < self.negative_iou) & ~in_pos
        g_prime = torch.where(closeness >= 1, torch.zeros_like(closeness), closeness)
        same_logits = (cos_own / self.tau + torch.log1p(g_prime)).masked_fill(~same_neg, float("-inf"))
        own_video = torch.nn.functional.one_hot(sentence_video, b).bool()  # (q b)
        other_logits = (cos_all / self.tau).masked_fill(own_video[:, :, None], float("-inf")).flatten(1)
        log_denominator = torch.logsumexp(torch.cat([pos_logits_masked, same_logits, other_logits], dim=1), dim=1)
        per_positive = pos_logits - log_denominator[:, None]  # (q k)
        per_sentence = -(pos_weight * torch.where(is_pos, per_positive, torch.zeros_like(per_positive))).sum(dim=1)
        return per_sentence.mean()
