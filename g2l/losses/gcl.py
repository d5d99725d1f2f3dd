"""L_GCL: the geodesic-guided contrastive loss of G2L (docs/method.md section 3); replaces L_s.

Notation for sentence j of video v(j): ``s_j`` its normalised contrastive feature, ``m_c`` the
normalised contrastive feature of cell c, ``cos_jc = cos(s_j, m_c)``, ``g_j`` the cell of highest
IoU with the ground truth (``positives[:, 0]``), ``G_jc`` the geodesic closeness of cell c of v(j)
to g_j (1 at g_j, ``1 - dist`` within the cut-off, 0 beyond; no gradient), ``G'`` = G with its 1s
set to 0, ``IoU_jc`` the IoU of cell c with the ground truth, ``tau`` the temperature.

Form ``"g2l"`` (the default): a multi-positive contrast whose parts are options.

    P_j      = g_j and the ``num_positives - 1`` other cells of largest G_j among the cells with
               ``IoU_jc >= positive_iou`` and G_jc > 0 (``positive_iou = 0``: no IoU condition,
               the paper's positives), weights
               w_jp = G_jp / sum_{p' in P_j} G_jp'   (``positive_weights="normalised"``) or
               w_jp = G_jp                           (``"raw"``: g_j keeps weight 1)
    z_jp     = (cos_jp - margin * [positive_margin]) / tau                       (p in P_j)
    N_j^same = cells of v(j) with IoU_jc < 0.5, not in P_j, logit
               n_jc = cos_jc / tau + log(1 +- G'_jc) + moment_push * cos(m_{g_j}, m_c) / tau
               (``negative_closeness="harder"``, the method as written: near-misses on the manifold count
               (1 + G') times; ``"softer"``: (1 - G') times, for sparse annotation, where a cell
               close to g_j on the manifold but elsewhere in time may be an unlabelled second
               occurrence of the event rather than a negative; the moment-to-moment term,
               with gradient through both cells, pushes near-miss moment features away from the
               ground truth's: the "uniform" part of G2L; ``moment_push = 0`` switches it off)
    N_j^oth  = every valid cell of every other video in the batch, logit cos_jc / tau
    D_j      = sum_{p in P_j} exp(z_jp) + sum_{N^same} exp(n_jc) + sum_{N^oth} exp(cos_jc / tau)

    aggregation "infonce":  L_j = - sum_{p in P_j} w_jp * ( z_jp - log D_j )
    aggregation "milnce":   L_j = - log( sum_p w_jp exp(z_jp) / D'_j ),
                            D'_j = sum_p w_jp exp(z_jp) + (the two negative sums of D_j)
    L_GCL = mean over sentences j of L_j

With ``num_positives = 1`` the form is MMN's L_s with geodesic hard-negative weights (and, unlike
L_s, same-video cells with IoU >= 0.5 are neither pulled nor pushed). Every log-sum is a logsumexp.

Form ``"authors"``: the authors' released loss (``loss_hard_sent`` of their code), exactly, with
logsumexp instead of their overflowing ``log(sum(exp(.)))``:

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
from torch import nn

FORMS = ("g2l", "authors")
AGGREGATIONS = ("infonce", "milnce")
POSITIVE_WEIGHTS = ("normalised", "raw")
NEGATIVE_CLOSENESS = ("harder", "softer")


class GeodesicContrastLoss(nn.Module):
    def __init__(self, *, margin: float, tau: float, num_positives: int = 5, negative_iou: float = 0.5,
                 positive_weights: str = "normalised", form: str = "g2l", positive_iou: float = 0.0,
                 aggregation: str = "infonce", positive_margin: bool = True, moment_push: float = 0.0,
                 negative_closeness: str = "harder"):
        super().__init__()
        for name, value, allowed in (("positive_weights", positive_weights, POSITIVE_WEIGHTS), ("form", form, FORMS),
                                     ("aggregation", aggregation, AGGREGATIONS),
                                     ("negative_closeness", negative_closeness, NEGATIVE_CLOSENESS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.margin, self.tau, self.positive_weights = margin, tau, positive_weights
        self.num_positives, self.negative_iou = num_positives, negative_iou
        self.form, self.positive_iou, self.aggregation = form, positive_iou, aggregation
        self.positive_margin, self.moment_push, self.negative_closeness = positive_margin, moment_push, negative_closeness

    def select_positives(self, closeness: torch.Tensor, iou_cells: torch.Tensor,
                         gt_cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q C)`` G and IoU, ``(q,)`` g_j -> ``(q k)`` positive cell indices and a ``(q k)`` mask
        of the picks that count (the authors' form counts every pick)."""
        k = min(self.num_positives, closeness.shape[1])
        if self.form == "authors":
            top_g, top_idx = torch.topk(closeness, k, dim=1)
            return top_idx, torch.ones_like(top_g, dtype=torch.bool)
        eligible = torch.where(iou_cells >= self.positive_iou, closeness, torch.zeros_like(closeness))
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
        gt_cell = positives[:, 0]
        cos_all = torch.einsum("qd,bcd->qbc", sentence_contrast, cell_contrast)  # (q b C)
        rows = torch.arange(sentence_contrast.shape[0], device=cos_all.device)
        cos_own = cos_all[rows, sentence_video]  # (q C)
        if self.form == "authors" or self.moment_push:
            gt_features = cell_contrast[sentence_video, gt_cell]  # (q d), m_{g_j}
            gt_cos = torch.einsum("qd,bcd->qbc", gt_features, cell_contrast)  # (q b C) cos(m_{g_j}, m)
        own_video = torch.nn.functional.one_hot(sentence_video, cell_contrast.shape[0]).bool()  # (q b)
        g_prime = torch.where(closeness >= 1, torch.zeros_like(closeness), closeness)
        pos_idx, pos_valid = self.select_positives(closeness, iou_cells, gt_cell)  # (q k)
        if self.form == "authors":
            return self._authors(cos_all, cos_own, gt_cos, own_video, closeness, g_prime, iou_cells, sentence_video,
                                 pos_idx)

        pos_g = closeness.gather(1, pos_idx).masked_fill(~pos_valid, 0.0)
        if self.positive_weights == "normalised":
            pos_weight = pos_g / pos_g.sum(dim=1, keepdim=True).clamp(min=1e-12)  # (q k)
        else:
            pos_weight = pos_g
        margin = self.margin if self.positive_margin else 0.0
        pos_logits = (cos_own.gather(1, pos_idx) - margin) / self.tau  # (q k)
        pos_logits_masked = pos_logits.masked_fill(~pos_valid, float("-inf"))

        in_pos = torch.zeros_like(cos_own, dtype=torch.bool).scatter(1, pos_idx, pos_valid)  # (q C)
        same_neg = (iou_cells < self.negative_iou) & ~in_pos
        sign = 1.0 if self.negative_closeness == "harder" else -1.0
        same_logits = cos_own / self.tau + torch.log1p(sign * g_prime)
        if self.moment_push:
            same_logits = same_logits + self.moment_push * gt_cos[rows, sentence_video] / self.tau
        same_logits = same_logits.masked_fill(~same_neg, float("-inf"))  # (q C)
        other_logits = (cos_all / self.tau).masked_fill(own_video[:, :, None], float("-inf")).flatten(1)
        log_negatives = torch.logsumexp(torch.cat([same_logits, other_logits], dim=1), dim=1)  # (q,)
        if self.aggregation == "infonce":
            log_denominator = torch.logaddexp(torch.logsumexp(pos_logits_masked, dim=1), log_negatives)
            per_positive = pos_logits - log_denominator[:, None]  # (q k)
            per_sentence = -(pos_weight * torch.where(pos_valid, per_positive, torch.zeros_like(per_positive))).sum(dim=1)
        else:
            log_weight = torch.log(pos_weight.clamp(min=1e-30)).masked_fill(~pos_valid, float("-inf"))
            log_positive = torch.logsumexp(log_weight + pos_logits_masked, dim=1)  # (q,)
            per_sentence = -(log_positive - torch.logaddexp(log_positive, log_negatives))
        return per_sentence.mean()

    def _authors(self, cos_all, cos_own, gt_cos, own_video, closeness, g_prime, iou_cells, sentence_video, pos_idx):
        tau = self.tau
        pos_logits = closeness.gather(1, pos_idx) * torch.exp(cos_own.gather(1, pos_idx)) / tau  # (q k)
        gt_cos_own = gt_cos[torch.arange(len(sentence_video), device=cos_all.device), sentence_video]  # (q C)
        same_logits = torch.exp(cos_own) * (1 + g_prime) * torch.exp(gt_cos_own) / tau
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
