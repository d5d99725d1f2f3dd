"""The total loss: a set of named terms with weights (docs/method.md section 3, "Total").

    L = sum over terms n of  w_n(epoch) * L_n,     w_n(epoch) = base_n * s_n(epoch),
    base = {bce: 1, video_contrast: lambda_c, sentence_contrast: lambda_c, ssi: w_ssi}

with ``s_n = 1`` up to epoch ``only_iou_epoch`` (1-based, inclusive) and ``only_iou_scale`` (0.01)
after it for every term but ``bce`` (MMN's "only IoU" phase). The sentence term is L_s, L_GCL or
the authors' L_GCL, always under the name ``sentence_contrast``. As in moment_detr's criterion,
a term is a name, a module and a weight: each module (a ``LossTerm``) computes its own RAW value
and its own diagnostics from the step's shared ``LossInputs``; the weights are applied in one
place, :meth:`GroundingLoss.weight_dict` (name -> w_n for an epoch), and the combiner only weights
and sums.

The returned dict holds each weighted term under its name, their sum under ``"total"``, the
terms' diagnostics (``"stat_*"``, no gradient, not in the total), such as the share of L_GCL
positives with IoU < 0.5, and each term's raw value under ``"raw_<name>"`` (not in the total):
training logs both, so that a curve that drops because its weight changed (the only-IoU epoch
scales the contrastive terms by 0.01) is not read as a collapse.
"""

from __future__ import annotations

import torch
from torch import nn

from g2l.losses.kernels import chosen_kernels, resolve_kernels
from g2l.losses.positives import positive_cells
from g2l.losses.term import LossInputs, LossTerm

IOU_TERM = "bce"  # the one term the late scale leaves alone
RAW_PREFIX = "raw_"  # a term's unweighted value is returned (and logged) as raw_<name>
INITIAL_GEODESIC_ROUNDS = 4  # rounds of walks of up to 3 edges (geodesic_torch.relax_rounds) to try first


class GroundingLoss(nn.Module):
    def __init__(
        self,
        *,
        terms: dict[str, LossTerm],
        weights: dict[str, float],
        num_positives: int = 1,
        only_iou_epoch: int = 7,
        only_iou_scale: float = 0.01,
        geodesic_k: int = 5,
        geodesic_cutoff: float = 0.5,
        kernels: str | None = None,
    ):
        """``terms``: name -> module, summed in this order; ``weights``: name -> base weight (every term
        has one); ``num_positives``: the cells of highest IoU per sentence that L_v and L_s pull;
        ``kernels``: auto, numba or torch for the geodesic closeness (None: the environment variable
        ``G2L_KERNELS``, g2l/losses/kernels.py)."""
        super().__init__()
        if set(terms) != set(weights):
            raise ValueError(f"every term needs a weight and every weight a term: {sorted(terms)} vs {sorted(weights)}")
        self.terms = nn.ModuleDict(terms)
        self.weights = dict(weights)
        self.num_positives = num_positives
        self.only_iou_epoch, self.only_iou_scale = only_iou_epoch, only_iou_scale
        self.geodesic_k, self.geodesic_cutoff = geodesic_k, geodesic_cutoff
        self.kernels = chosen_kernels(kernels)
        self.geodesic_rounds = INITIAL_GEODESIC_ROUNDS  # torch kernels: relaxation rounds, learned (grows only)

    def inputs(self, output, batch, cell_start_idx: torch.Tensor, cell_end_idx: torch.Tensor, step: int,
               rounds: int | None = None) -> LossInputs:
        """What the terms share, computed once: the cells' IoU, the positives and, if a term needs
        it, the geodesic closeness G to g_j (torch kernels: ``rounds`` relaxation rounds, default
        the learned ``geodesic_rounds``, and a device flag saying whether G is exact)."""
        iou_cells = batch.iou_maps[:, cell_start_idx, cell_end_idx]  # (q C)
        positives = positive_cells(iou_cells, self.num_positives)  # (q k)
        closeness = settled = None
        if any(term.needs_closeness for term in self.terms.values()):
            from g2l.ops.geodesic import geodesic_closeness_rows

            features = output.cell_contrast.detach()  # (b C d)
            kernels = resolve_kernels(self.kernels, features.device, "geodesic")
            if kernels == "torch" and features.shape[1] > self.geodesic_k:  # no host read: settled says if exact
                from g2l.ops.geodesic_torch import closeness_torch

                valid = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
                closeness, settled = closeness_torch(features, valid, batch.sentence_video, positives[:, 0],
                                                     self.geodesic_k, float(self.geodesic_cutoff),
                                                     rounds=rounds or self.geodesic_rounds)
            else:
                closeness = geodesic_closeness_rows(features, batch.sentence_video, positives[:, 0], k=self.geodesic_k,
                                                    cutoff=self.geodesic_cutoff, kernels=kernels)  # (q C), no gradient
        return LossInputs(output=output, batch=batch, cell_start_idx=cell_start_idx, cell_end_idx=cell_end_idx,
                          iou_cells=iou_cells, positives=positives, closeness=closeness, step=step,
                          closeness_settled=settled)

    def forward(self, output, batch, cell_start_idx: torch.Tensor, cell_end_idx: torch.Tensor, epoch: int,
                step: int = 0) -> dict:
        """``output``: GroundingOutput; ``batch``: Batch on the same device; ``epoch``: 1-based;
        ``step``: the global step (seeds the Shapley sampler).

        With the torch geodesic kernel, G comes from a fixed number of relaxation rounds (no host
        read); whether that reached the fixed point is read with L_SSI's one read of the device (or
        on its own without L_SSI). When it did not, the rounds grow by a quarter and the terms are
        computed again: the rounds needed are learned in the first steps, then every step reads
        the device once."""
        rounds = self.geodesic_rounds
        while True:
            inputs = self.inputs(output, batch, cell_start_idx, cell_end_idx, step, rounds)
            result = self._terms(inputs, epoch)
            if inputs.closeness_settled is None:
                return result
            settled = inputs.settled_read if inputs.settled_read is not None else bool(inputs.closeness_settled)
            if settled:
                self.geodesic_rounds = max(self.geodesic_rounds, rounds)
                return result
            rounds = rounds + rounds // 4 + 1

    def weight_dict(self, epoch: int) -> dict[str, float]:
        """Name -> the weight of each term at ``epoch`` (1-based): its base weight, times
        ``only_iou_scale`` after ``only_iou_epoch`` for every term but ``bce``."""
        late_scale = self.only_iou_scale if epoch > self.only_iou_epoch else 1.0
        return {name: self.weights[name] * (1.0 if name == IOU_TERM else late_scale) for name in self.terms}

    def _terms(self, inputs: LossInputs, epoch: int) -> dict:
        """The weighted terms, their sum (``total``), their diagnostics and the raw terms."""
        weights = self.weight_dict(epoch)
        raw: dict[str, torch.Tensor] = {}
        losses: dict[str, torch.Tensor] = {}
        stats: dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            raw[name], diagnostics = term.term(inputs)
            losses[name] = raw[name] if weights[name] == 1.0 else weights[name] * raw[name]
            stats.update(diagnostics)
        losses["total"] = sum(losses.values())  # bce is always a term
        return {**losses, **stats, **{RAW_PREFIX + name: value for name, value in raw.items()}}


def build_loss(cfg, *, kernels: str | None = None) -> GroundingLoss:
    """Config -> the loss: every term whose weight is above 0, named as train.py logs it. ``kernels``:
    auto, numba or torch for G2L's geodesic and Shapley signals (None: ``G2L_KERNELS``, g2l/losses/kernels.py)."""
    from g2l.losses.bce import IoUBCELoss
    from g2l.losses.video_contrast import VideoToSentenceLoss

    lo = cfg.loss
    kernels = chosen_kernels(kernels)
    terms: dict[str, LossTerm] = {"bce": IoUBCELoss(iou_min=lo.iou_min, iou_max=lo.iou_max)}
    weights = {"bce": 1.0}
    if lo.contrast_weight > 0:
        terms["video_contrast"], weights["video_contrast"] = VideoToSentenceLoss(margin=lo.margin, tau=lo.tau), lo.contrast_weight
        sentence = _sentence_term(lo)
        if sentence is not None:
            terms["sentence_contrast"], weights["sentence_contrast"] = sentence, lo.contrast_weight
    if lo.ssi_weight > 0:
        from g2l.losses.ssi import ShapleyInteractionLoss

        terms["ssi"] = ShapleyInteractionLoss(num_players=lo.ssi_num_players, num_samples=lo.ssi_num_samples, tau=lo.tau,
                                              seed=cfg.train.seed, kernels=kernels)
        weights["ssi"] = lo.ssi_weight
    return GroundingLoss(terms=terms, weights=weights, num_positives=lo.num_positives, only_iou_epoch=lo.only_iou_epoch,
                         only_iou_scale=lo.only_iou_scale, geodesic_k=lo.geodesic_k, geodesic_cutoff=lo.geodesic_cutoff,
                         kernels=kernels)


def _sentence_term(lo) -> LossTerm | None:
    """``loss.sentence_contrast`` -> its module: mmn (L_s), gcl (L_GCL), gcl_authors, or off (None)."""
    if lo.sentence_contrast == "mmn":
        from g2l.losses.sentence_contrast import SentenceToVideoLoss

        return SentenceToVideoLoss(margin=lo.margin, tau=lo.tau)
    if lo.sentence_contrast == "gcl":
        from g2l.losses.gcl import GeodesicContrastLoss

        return GeodesicContrastLoss(margin=lo.margin, tau=lo.tau, num_positives=lo.gcl_num_positives)
    if lo.sentence_contrast == "gcl_authors":
        from g2l.losses.gcl_authors import AuthorsGeodesicContrastLoss

        return AuthorsGeodesicContrastLoss(tau=lo.tau, num_positives=lo.gcl_num_positives)
    return None
