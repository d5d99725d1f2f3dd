"""The total loss as a dict of named, weighted terms (docs/method.md section 3, "Total").

    L = L_bce + lambda_c * (L_v + L_s or L_GCL) + w_ssi * L_SSI

until epoch ``only_iou_epoch`` (1-based, inclusive); after it every term but L_bce is multiplied
by ``only_iou_scale`` (0.01). Each term is switched off by passing None; L_s (``sentence_contrast``)
and L_GCL (``gcl``) are alternatives, logged under the same name. The returned dict holds
each weighted term under its name and their sum under ``"total"``; diagnostics (``"stat_*"``, no
gradient, not in the total) ride along, such as the share of L_GCL positives with IoU < 0.5.
"""

from __future__ import annotations

import torch
from torch import nn

from g2l.losses.positives import positive_cells

# Diagnostics in the returned dict are named "stat_*": logged with the terms, never part of "total".
WRONG_POSITIVES = "stat_gcl_positives_iou_below_0.5"


class GroundingLoss(nn.Module):
    def __init__(
        self,
        *,
        bce: nn.Module | None,
        video_contrast: nn.Module | None,
        sentence_contrast: nn.Module | None,
        gcl: nn.Module | None = None,
        ssi: nn.Module | None = None,
        num_positives: int = 1,
        contrast_weight: float = 0.05,
        ssi_weight: float = 0.0,
        only_iou_epoch: int = 7,
        only_iou_scale: float = 0.01,
        geodesic_k: int = 5,
        geodesic_cutoff: float = 0.5,
    ):
        super().__init__()
        if sentence_contrast is not None and gcl is not None:
            raise ValueError("L_GCL replaces L_s: pass sentence_contrast or gcl, not both")
        self.bce, self.video_contrast, self.sentence_contrast, self.ssi = bce, video_contrast, sentence_contrast, ssi
        self.gcl = gcl
        self.num_positives = num_positives
        self.contrast_weight, self.ssi_weight = contrast_weight, ssi_weight
        self.only_iou_epoch, self.only_iou_scale = only_iou_epoch, only_iou_scale
        self.geodesic_k, self.geodesic_cutoff = geodesic_k, geodesic_cutoff

    def forward(self, output, batch, cell_start_idx: torch.Tensor, cell_end_idx: torch.Tensor, epoch: int,
                step: int = 0) -> dict:
        """``output``: GroundingOutput; ``batch``: Batch on the same device; ``epoch``: 1-based;
        ``step``: the global step (seeds the Shapley sampler)."""
        iou_cells = batch.iou_maps[:, cell_start_idx, cell_end_idx]  # (q C)
        terms: dict[str, torch.Tensor] = {}
        late = epoch > self.only_iou_epoch
        scale = self.only_iou_scale if late else 1.0
        if self.bce is not None:
            terms["bce"] = self.bce(output.iou_cos, batch.targets[:, cell_start_idx, cell_end_idx])
        positives = positive_cells(iou_cells, self.num_positives)  # (q k)
        closeness = None
        if self.gcl is not None or self.ssi is not None:  # geodesic closeness G feeds L_GCL and L_SSI
            from g2l.ops.geodesic import geodesic_closeness_batch

            video_of = batch.sentence_video
            sources = [positives[video_of == v, 0] for v in range(output.cell_contrast.shape[0])]
            closeness = geodesic_closeness_batch(
                output.cell_contrast.detach(), sources, k=self.geodesic_k, cutoff=self.geodesic_cutoff
            )  # (q C), no gradient; rows video by video, which is the sentence order
        if self.video_contrast is not None:
            loss = self.video_contrast(
                output.cell_contrast, output.sentence_contrast, batch.sentence_video, positives, batch.windows_s
            )
            terms["video_contrast"] = self.contrast_weight * scale * loss
        if self.sentence_contrast is not None:
            loss = self.sentence_contrast(
                output.cell_contrast, output.sentence_contrast, batch.sentence_video, positives, iou_cells
            )
            terms["sentence_contrast"] = self.contrast_weight * scale * loss
        if self.gcl is not None:  # logged under L_s's name: the sentence-to-moment term it replaces
            loss = self.gcl(
                output.cell_contrast, output.sentence_contrast, batch.sentence_video, positives, iou_cells, closeness
            )
            terms["sentence_contrast"] = self.contrast_weight * scale * loss
        if self.ssi is not None and self.ssi_weight > 0:
            loss = self.ssi(output.cell_contrast, output.sentence_contrast, batch.sentence_video, closeness, step)
            terms["ssi"] = self.ssi_weight * scale * loss
        terms["total"] = sum(terms.values()) if terms else output.iou_cos.sum() * 0
        if self.gcl is not None:
            terms[WRONG_POSITIVES] = self._wrong_positive_share(closeness, iou_cells, positives[:, 0])
        return terms

    def _wrong_positive_share(self, closeness, iou_cells, gt_cell) -> torch.Tensor:
        """Diagnostic, no gradient: the share of L_GCL's positives other than g_j whose IoU with the
        ground truth is below 0.5 (temporally wrong moments that the loss pulls); 0 when none."""
        with torch.no_grad():
            idx, valid = self.gcl.select_positives(closeness, iou_cells, gt_cell)
            extra = valid & (idx != gt_cell[:, None])
            wrong = (iou_cells.gather(1, idx) < 0.5) & extra
            return wrong.sum().float() / extra.sum().clamp(min=1).float()


def build_loss(cfg) -> GroundingLoss:
    """Config -> the loss combiner with the configured terms switched on."""
    from g2l.losses.bce import IoUBCELoss
    from g2l.losses.sentence_contrast import SentenceToVideoLoss
    from g2l.losses.video_contrast import VideoToSentenceLoss

    lo = cfg.loss
    sentence = gcl = None
    if lo.sentence_contrast == "mmn":
        sentence = SentenceToVideoLoss(margin=lo.margin, tau=lo.tau)
    elif lo.sentence_contrast == "gcl":
        from g2l.losses.gcl import GeodesicContrastLoss

        gcl = GeodesicContrastLoss(
            margin=lo.margin, tau=lo.tau, num_positives=lo.gcl_num_positives, positive_weights=lo.gcl_positive_weights,
            form=lo.gcl_form, positive_iou=lo.gcl_positive_iou, aggregation=lo.gcl_aggregation,
            positive_margin=lo.gcl_positive_margin, moment_push=lo.gcl_moment_push,
            negative_closeness=lo.gcl_negative_closeness,
        )
    ssi = None
    if lo.ssi_weight > 0:
        from g2l.losses.ssi import ShapleyInteractionLoss

        ssi = ShapleyInteractionLoss(
            num_players=lo.ssi_num_players, num_samples=lo.ssi_num_samples, tau=lo.tau, seed=cfg.train.seed,
            estimator=lo.ssi_estimator, target=lo.ssi_target,
        )
    return GroundingLoss(
        bce=IoUBCELoss() if lo.use_bce else None,
        video_contrast=VideoToSentenceLoss(margin=lo.margin, tau=lo.tau) if lo.video_contrast else None,
        sentence_contrast=sentence,
        gcl=gcl,
        ssi=ssi,
        num_positives=lo.num_positives,
        contrast_weight=lo.contrast_weight,
        ssi_weight=lo.ssi_weight,
        only_iou_epoch=lo.only_iou_epoch,
        only_iou_scale=lo.only_iou_scale,
        geodesic_k=lo.geodesic_k,
        geodesic_cutoff=lo.geodesic_cutoff,
    )
