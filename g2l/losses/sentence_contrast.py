"""L_s: MMN's sentence-to-video contrast (docs/method.md section 3); replaced by L_GCL in G2L.

For every sentence j and each positive cell p of its video v(j):

    z+          = (cos(s^c_j, m^c_{v(j), p}) - margin) / tau
    sum_same    = sum over the valid cells c of v(j) of exp(a_jc / tau),
                  a_jc = cos(s^c_j, m^c_{v(j), c}) if IoU(c, gt_j) < 0.5, else 0
    sum_other   = sum over every valid cell c of every other video b of exp(cos(s^c_j, m^c_{b, c}) / tau)
    L_s         = mean over (j, p) of  -( z+ - log(exp(z+) + sum_same + sum_other + 1e-6) )

The published implementation masks the high-IoU same-video cells by multiplying their cosine by
0, so each of them (the positives included) enters ``sum_same`` as exp(0) = 1 instead of being
dropped. We keep that convention so losses and scores stay comparable with the published ones.
The log-sum is computed as a logsumexp, which is the same value without overflow.
"""

from __future__ import annotations

import math

import torch

from g2l.losses.positives import NEGATIVE_IOU
from g2l.losses.term import LossInputs, LossTerm


class SentenceToVideoLoss(LossTerm):
    def __init__(self, *, margin: float, tau: float, negative_iou: float = NEGATIVE_IOU):
        super().__init__()
        self.margin, self.tau, self.negative_iou = margin, tau, negative_iou

    def forward(
        self,
        cell_contrast: torch.Tensor,  # (b C d), normalised
        sentence_contrast: torch.Tensor,  # (q d), normalised
        sentence_video: torch.Tensor,  # (q,)
        positives: torch.Tensor,  # (q k) cell indices
        iou_cells: torch.Tensor,  # (q C) IoU of each cell of v(j) with gt_j
    ) -> torch.Tensor:
        b, num_cells, _ = cell_contrast.shape
        cos_all = torch.einsum("qd,bcd->qbc", sentence_contrast, cell_contrast)  # (q b C)
        own_video = torch.nn.functional.one_hot(sentence_video, b).bool()  # (q b)
        cos_own = cos_all[torch.arange(len(sentence_video)), sentence_video]  # (q C)
        same_logits = torch.where(iou_cells < self.negative_iou, cos_own, torch.zeros_like(cos_own)) / self.tau
        other_logits = cos_all.masked_fill(own_video[:, :, None], float("-inf")).flatten(1) / self.tau  # (q b*C)
        positive = (cos_own.gather(1, positives) - self.margin) / self.tau  # (q k)
        eps = torch.full_like(same_logits[:, :1], math.log(1e-6))
        rest = torch.logsumexp(torch.cat([same_logits, other_logits, eps], dim=1), dim=1)  # (q,) log(sums + 1e-6)
        return -(positive - torch.logaddexp(positive, rest[:, None])).mean()

    def term(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = inputs.output
        return self(out.cell_contrast, out.sentence_contrast, inputs.batch.sentence_video, inputs.positives,
                    inputs.iou_cells), {}
