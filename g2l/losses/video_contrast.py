"""L_v: MMN's video-to-sentence contrast (docs/method.md section 3).

For every sentence j and each of its positive cells p (the top-k cells by IoU with gt_j; k = 1,
or 3 on TACoS), the anchor is the moment feature m = m^c_{v(j), p}. The candidates are all
sentences j' of the batch, with logits

    z_j  = (cos(m, s^c_j) - margin) / tau          (the positive)
    z_j' = cos(m, s^c_j') / tau                     (every other sentence)

where a sentence j' != j of the same video whose ground truth has IoU >= 0.5 with gt_j is not a
candidate (it describes the same moment). The loss is

    L_v = mean over (j, p) of  -( z_j - logsumexp_{j' in candidates} z_j' )

(the positive is among the candidates).
"""

from __future__ import annotations

import torch

from g2l.losses.positives import SAME_MOMENT_IOU, window_iou
from g2l.losses.term import LossInputs, LossTerm


class VideoToSentenceLoss(LossTerm):
    def __init__(self, *, margin: float, tau: float, same_moment_iou: float = SAME_MOMENT_IOU):
        super().__init__()
        self.margin, self.tau, self.same_moment_iou = margin, tau, same_moment_iou

    def forward(
        self,
        cell_contrast: torch.Tensor,  # (b C d), normalised
        sentence_contrast: torch.Tensor,  # (q d), normalised
        sentence_video: torch.Tensor,  # (q,)
        positives: torch.Tensor,  # (q k) cell indices
        windows_s: torch.Tensor,  # (q 2)
    ) -> torch.Tensor:
        q, k = positives.shape
        anchors = cell_contrast[sentence_video[:, None], positives]  # (q k d)
        logits = torch.einsum("qkd,jd->qkj", anchors, sentence_contrast) / self.tau  # (q k q)
        own = torch.eye(q, dtype=torch.bool, device=logits.device)
        logits = logits - (self.margin / self.tau) * own[:, None, :]
        same_video = sentence_video[:, None] == sentence_video[None, :]
        excluded = same_video & (window_iou(windows_s) >= self.same_moment_iou) & ~own  # (q q)
        logits = logits.masked_fill(excluded[:, None, :], float("-inf"))
        positive = logits.diagonal(dim1=0, dim2=2).T  # (q k)
        return -(positive - torch.logsumexp(logits, dim=-1)).mean()

    def term(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out, batch = inputs.output, inputs.batch
        return self(out.cell_contrast, out.sentence_contrast, batch.sentence_video, inputs.positives, batch.windows_s), {}
