"""L_SSI: the semantic Shapley interaction loss of G2L (docs/method.md section 3).

Per video v, a cooperative game whose players are its sentences and, for each sentence j, the K
cells with the largest geodesic closeness G_j and the K cells most similar to s^c_j
(de-duplicated: M_v moment players). With ``sim (S_v M_v)`` the detached cosine of sentence and
moment features, the pairwise Shapley interaction ``I_ji`` of sentence j and moment i is estimated
by Monte Carlo (``g2l.ops.shapley.pairwise_interaction_batch``, or its torch twin (g2l/losses/kernels.py):
true removal of absent players, the textbook sign; by default the stratified estimator, which
reaches a correlation above 0.95 with the exact index at 256-512 draws per sentence,
bench/shapley_accuracy.py) with its standard error
``se_ji``. Each sentence's interactions become a target distribution over the moment players,

    t_j = softmax_i( rho_j * I_ji / (tau * (max_i |I_ji| + 1e-8)) ),
    rho_j = max(0, 1 - noise_j / var_i I_ji),
    noise_j = m / (m - 1) * (mean_i se_ji^2 - se(mean_i I_ji)^2)

(interactions rescaled to [-1, 1], sharpened by the contrastive temperature, and flattened by the
reliability rho_j of the estimates: the share of their spread across moments that is not sampling
noise; noise alone gives a uniform target, an exact estimate the full sharpness). One draw serves
every moment of a sentence, so the errors of a row are correlated: noise_j is the variance ACROSS
moments that sampling adds (the row's common error, ``se(mean_i I_ji)``, moves the row and not its
spread; with independent errors noise_j is mean_i se_ji^2). The model's
alignment distribution, with gradient, is

    A_j = softmax_i( cos(s^c_j, m^c_i) / tau )     over the same moment players,

    L_SSI = mean over sentences j of the batch of  - sum_i t_ji log A_ji.

Moments that cooperate with a sentence (their presence together raises the bidirectional alignment
more than apart) are pulled into alignment with it. The targets carry no gradient. Draws are seeded
by ``(seed, step)``, so a run and its resumption see the same targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from g2l.losses.kernels import chosen_kernels, interaction_estimator, resolve_kernels
from g2l.losses.term import LossInputs, LossTerm


def select_moment_players(closeness: torch.Tensor, similarity: torch.Tensor, num_players: int) -> torch.Tensor:
    """``(s C)`` closeness and similarity of one video's sentences -> sorted unique cell indices:
    the union over sentences of the top-K by closeness and the top-K by similarity."""
    k = min(num_players, closeness.shape[1])
    chosen = torch.cat([torch.topk(closeness, k, dim=1).indices.flatten(), torch.topk(similarity, k, dim=1).indices.flatten()])
    return torch.unique(chosen)


def estimate_reliability(interactions: torch.Tensor, stderr: torch.Tensor,
                         mean_stderr: torch.Tensor | None = None) -> torch.Tensor:
    """``(s m)`` estimates and standard errors, and ``(s,)`` standard errors of each sentence's mean
    estimate over its moments -> ``(s 1)`` rho = max(0, 1 - noise / var_i I): the share of each
    sentence's spread across moments that is not sampling noise, kept in [1e-6, 1] so that it can
    divide (1e-6, a uniform target, for a single moment).

    The noise is what sampling adds to the spread across moments, the expected ``var_i`` of the
    estimates' errors e_i: ``(sum_i Var e_i - m Var(mean_i e_i)) / (m - 1)``, which is

        noise = m / (m - 1) * (mean_i se_i^2 - se_mean^2).

    One draw of the stratified estimator serves every moment of a sentence, so the errors are
    correlated and move together: their common part (``se_mean^2`` above ``mean_i se_i^2 / m``)
    shifts the row, not its spread. With independent errors (``mean_stderr=None``: assumed)
    ``se_mean^2 = mean_i se_i^2 / m`` and the noise is ``mean_i se_i^2``.
    tests/losses/test_ssi_reliability.py checks the noise against repeated seeds."""
    present = torch.ones_like(interactions, dtype=torch.bool)  # one game, no padding
    row_means = None if mean_stderr is None else mean_stderr.reshape(1, -1)
    return padded_reliability(interactions[None], stderr[None], present[None], row_means)[0]


def interaction_target(interactions: torch.Tensor, stderr: torch.Tensor | None, tau: float,
                       mean_stderr: torch.Tensor | None = None) -> torch.Tensor:
    """``(s m)`` interactions and standard errors (and ``(s,)`` standard errors of the row means,
    :func:`estimate_reliability`) -> ``(s m)`` t (``stderr=None``: rho = 1, the full sharpness,
    which an exact estimate reaches)."""
    scale = tau * (interactions.abs().amax(dim=1, keepdim=True) + 1e-8)
    if stderr is not None:
        scale = scale / estimate_reliability(interactions, stderr, mean_stderr)
    return torch.softmax(interactions / scale, dim=1)


@dataclass
class PaddedGames:
    """Every video's game, padded into one tensor: video v's is ``cos[v, :s_v, :m_v]``."""

    cos: torch.Tensor  # (b s m) cosines with gradient; 0 on padded sentences
    present: torch.Tensor  # (b s m) bool
    shapes: list[tuple[int, int]]  # (s_v, m_v) per video, on the host
    finite: bool  # every present cosine is finite
    also_read: bool | None = None  # the flag read with the sizes


def padded_games(contrast_cos: torch.Tensor, sentence_video: torch.Tensor, closeness: torch.Tensor, num_players: int,
                 num_videos: int, max_sentences: int | None = None, also_read: torch.Tensor | None = None) -> PaddedGames:
    """Each video's game: ``(s_v m_v)`` cosines, with gradient, of its sentences with its moment
    players (:func:`select_moment_players`'s union, in increasing cell order), for all videos at once.

    ``contrast_cos (q C)``: cos(s^c_j, m^c of v(j)'s cells), the model's ``GroundingOutput.contrast_cos``
    (L_SSI reads these, it does not compute them again); ``sentence_video (q,)`` (a video's sentences
    contiguous), ``closeness (q C)``, ``num_videos`` b; ``max_sentences``: the most sentences of a
    video (the batch's ``sentence_mask.shape[1]``; None: the largest count). Everything is batched on
    the device; the host reads one small ``(2 b + 1)`` tensor, the games' sizes and whether the
    cosines are finite: the one read of the step (a sync on CUDA), with ``also_read`` (a bool scalar)
    if given."""
    contrast_cos = contrast_cos.float()  # the loss is computed in float32 (a bf16 forward returns bf16)
    num_sentences, num_cells = contrast_cos.shape
    device = sentence_video.device
    counts = torch.zeros(num_videos, dtype=torch.long, device=device).scatter_add_(
        0, sentence_video, torch.ones_like(sentence_video))  # (b,)
    first = torch.cumsum(counts, 0) - counts  # (b,) the first sentence of each video
    position = torch.arange(num_sentences, device=device) - first[sentence_video]  # (q,) within its video
    slots = num_sentences if max_sentences is None else max_sentences  # sentence slots per video, padded
    cos_padded = contrast_cos.new_zeros(num_videos, slots, num_cells)
    cos_padded = cos_padded.index_put((sentence_video, position), contrast_cos)  # (b s C)
    k = min(num_players, num_cells)
    picks = torch.cat([torch.topk(closeness, k, dim=1).indices, torch.topk(contrast_cos.detach(), k, dim=1).indices], 1)
    chosen = torch.zeros(num_videos, num_cells, dtype=torch.bool, device=device)
    chosen[sentence_video[:, None].expand_as(picks), picks] = True  # (b C)
    order = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)  # (b C) chosen cells first, in cell order
    widths = chosen.sum(dim=1)  # (b,)
    flags = [torch.isfinite(contrast_cos).all()] + ([also_read] if also_read is not None else [])
    read = torch.cat([counts, widths, torch.stack(flags).long()]).tolist()  # the one read of the device
    shapes = [(s, m) for s, m in zip(read[:num_videos], read[num_videos : 2 * num_videos])]
    big_s, big_m = max([s for s, _ in shapes] + [1]), max([m for _, m in shapes] + [1])
    cos = cos_padded[:, :big_s].gather(2, order[:, None, :big_m].expand(num_videos, big_s, big_m))  # (b s m)
    present = ((torch.arange(big_s, device=device) < counts[:, None])[:, :, None]
               & (torch.arange(big_m, device=device) < widths[:, None])[:, None, :])
    return PaddedGames(cos, present, shapes, bool(read[2 * num_videos]),
                       bool(read[-1]) if also_read is not None else None)


def moment_games(contrast_cos: torch.Tensor, sentence_video: torch.Tensor, closeness: torch.Tensor, num_players: int,
                 num_videos: int, max_sentences: int | None = None) -> list[torch.Tensor]:
    """:func:`padded_games` as a list of each video's ``(s_v m_v)`` game (videos with sentences)."""
    games = padded_games(contrast_cos, sentence_video, closeness, num_players, num_videos, max_sentences)
    return [games.cos[v, :s, :m] for v, (s, m) in enumerate(games.shapes) if s > 0]


def padded_reliability(interactions: torch.Tensor, stderr: torch.Tensor, present: torch.Tensor,
                       mean_stderr: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`estimate_reliability` of every sentence of padded games at once: ``(b s m)``
    estimates, standard errors and the present mask, and ``(b s)`` standard errors of the row means
    (or None: independent errors) -> ``(b s 1)`` rho (1e-6 where a sentence has fewer than 2
    moments). The same formula, with each row's own m (its present moments), so the two agree
    sentence by sentence (tests/losses/test_ssi_batched.py)."""
    count = present.sum(2, keepdim=True)  # (b s 1) the row's m
    dof = (count - 1).clamp_min(1)
    mean = interactions.where(present, 0.0).sum(2, keepdim=True) / count.clamp_min(1)
    spread = (interactions - mean).where(present, 0.0).pow(2).sum(2, keepdim=True) / dof
    noise = stderr.pow(2).where(present, 0.0).sum(2, keepdim=True) / count.clamp_min(1)  # mean_i se^2
    if mean_stderr is not None:  # m / (m - 1) * (mean_i se^2 - se_mean^2)
        noise = (noise - mean_stderr[:, :, None].pow(2)).clamp(min=0) * count / dof
    rho = (1 - noise / spread.clamp(min=1e-30)).clamp(min=1e-6, max=1.0)
    return torch.where(count >= 2, rho, 1e-6)


class ShapleyInteractionLoss(LossTerm):
    needs_closeness = True

    def __init__(self, *, num_players: int, num_samples: int, tau: float, seed: int = 0, kernels: str | None = None):
        """``kernels``: auto, numba or torch for the Shapley estimator (None: the environment variable
        ``G2L_KERNELS``, g2l/losses/kernels.py)."""
        super().__init__()
        self.num_players, self.num_samples, self.tau, self.seed = num_players, num_samples, tau, seed
        self.kernels = chosen_kernels(kernels)

    def forward(
        self,
        contrast_cos: torch.Tensor,  # (q C) cos(s^c_j, m^c of v(j)'s cells), GroundingOutput.contrast_cos
        sentence_video: torch.Tensor,  # (q,)
        closeness: torch.Tensor,  # (q C), no gradient
        num_videos: int,  # b
        step: int = 0,
        max_sentences: int | None = None,  # the most sentences of a video, if known on the host
    ) -> torch.Tensor:
        games = padded_games(contrast_cos, sentence_video, closeness, self.num_players, num_videos,
                             max_sentences)  # (b s m), with gradient
        return self.loss(games, step)

    def loss(self, games: PaddedGames, step: int) -> torch.Tensor:
        """L_SSI of the games (:func:`padded_games`), with gradient through their cosines."""
        if not games.finite:  # a loss that is not finite: training reports it as diverged
            return games.cos.sum() * torch.nan
        kernels = resolve_kernels(self.kernels, games.cos.device, "shapley")
        seed = self.seed * 1_000_003 + step
        if kernels == "torch":  # cosines / tau span at most 2 / tau: within the kernel's range if tau allows
            from g2l.ops.shapley_torch import MAX_LOGIT_RANGE, interaction_padded

            interactions, errors, mean_errors = interaction_padded(
                games.cos.detach(), games.shapes, self.num_samples, seed, self.tau,
                checked=2 / self.tau <= MAX_LOGIT_RANGE, return_mean_stderr=True)  # (b s m), (b s m), (b s)
        else:  # one copy to the host for every game, one back
            host = games.cos.detach().float().cpu().numpy()
            videos = [v for v, (s, m) in enumerate(games.shapes) if s * m > 0]
            inter, err, mean_err = interaction_estimator(kernels)(
                [host[v, : games.shapes[v][0], : games.shapes[v][1]] for v in videos], self.num_samples, seed=seed,
                tau=self.tau, return_mean_stderr=True)
            parts = np.zeros((3, *host.shape))  # estimates, standard errors, row means' errors in column 0
            for v, i, e, r in zip(videos, inter, err, mean_err):
                parts[0, v, : i.shape[0], : i.shape[1]], parts[1, v, : e.shape[0], : e.shape[1]] = i, e
                parts[2, v, : r.shape[0], 0] = r
            interactions, errors, mean_errors = torch.from_numpy(parts).to(games.cos.device)
            mean_errors = mean_errors[:, :, 0]  # (b s)
        present, dtype = games.present, games.cos.dtype
        interactions, errors, mean_errors = interactions.to(dtype), errors.to(dtype), mean_errors.to(dtype)
        scale = self.tau * (interactions.abs().where(present, 0.0).amax(2, keepdim=True) + 1e-8)
        scale = scale / padded_reliability(interactions, errors, present, mean_errors)  # (b s 1)
        lowest = torch.finfo(dtype).min  # not -inf: a padded sentence's row stays finite (no NaN gradient)
        target = torch.softmax((interactions / scale).masked_fill(~present, lowest), dim=2)
        log_alignment = torch.log_softmax((games.cos / self.tau).masked_fill(~present, lowest), dim=2)
        per_sentence = -(target * log_alignment).where(present, 0.0).sum(2)  # (b s)
        sentences = present.any(2)
        return per_sentence.where(sentences, 0.0).sum() / sentences.sum().clamp_min(1)

    def term(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = inputs.output
        games = padded_games(out.contrast_cos, inputs.batch.sentence_video, inputs.closeness, self.num_players,
                             out.cell_contrast.shape[0], inputs.batch.sentence_mask.shape[1],
                             also_read=inputs.closeness_settled)
        inputs.settled_read = games.also_read
        if games.also_read is False:  # G is not final: the combiner computes the terms again
            return games.cos.sum() * 0.0, {}
        return self.loss(games, inputs.step), {}
