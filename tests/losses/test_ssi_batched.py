"""L_SSI batched over videos (g2l/losses/ssi.py): the padded games are each video's game, the
batched reliability is estimate_reliability sentence by sentence (with each row's own number of
moments), and the loss equals the one computed video by video from the same estimates, with either
estimator."""

import numpy as np
import pytest
import torch

from g2l.losses.ssi import estimate_reliability, interaction_target, padded_games, padded_reliability
from g2l.models.grounding import per_video_cosine
from tests.losses.test_gcl import case as gcl_case


def test_padded_games_are_each_videos_game():
    cell, sent, sv, _, closeness = gcl_case(3, 4, 20, 6)[:5]
    games = padded_games(per_video_cosine(sent, cell, sv), sv, closeness, 3, len(cell))
    assert len(games.shapes) == 4 and games.finite
    for v, (s, m) in enumerate(games.shapes):
        rows = torch.nonzero(sv == v).flatten()
        sims = sent[rows] @ cell[v].T  # (s C)
        k = 3
        chosen = torch.unique(torch.cat([closeness[rows].topk(k, 1).indices.flatten(), sims.topk(k, 1).indices.flatten()]))
        assert (s, m) == (rows.numel(), chosen.numel())
        torch.testing.assert_close(games.cos[v, :s, :m], sims[:, chosen])
        assert games.present[v, :s, :m].all() and games.present[v].sum() == s * m


@pytest.mark.parametrize("with_mean_stderr", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_padded_reliability_is_estimate_reliability_per_sentence(seed, with_mean_stderr):
    rng = np.random.default_rng(seed)
    shapes = [(2, 5), (3, 1), (1, 7), (3, 4)]
    inter = torch.zeros(4, 3, 7)
    err = torch.zeros(4, 3, 7)
    present = torch.zeros(4, 3, 7, dtype=torch.bool)
    for g, (s, m) in enumerate(shapes):
        inter[g, :s, :m] = torch.tensor(rng.normal(size=(s, m)), dtype=torch.float32)
        err[g, :s, :m] = torch.tensor(rng.uniform(0, 1.5, size=(s, m)), dtype=torch.float32)
        present[g, :s, :m] = True
    inter[~present], err[~present] = 9.0, 9.0  # padding is never read
    # Row means' errors from 0 (independent-looking) to above mean se (the noise clamps at 0).
    mean_err = torch.tensor(rng.uniform(0, 1.2, size=(4, 3)), dtype=torch.float32) if with_mean_stderr else None
    rho = padded_reliability(inter, err, present, mean_err)
    for g, (s, m) in enumerate(shapes):
        row_err = mean_err[g, :s] if with_mean_stderr else None
        torch.testing.assert_close(rho[g, :s], estimate_reliability(inter[g, :s, :m], err[g, :s, :m], row_err))
        # and so the targets are interaction_target's
        scale = 0.1 * (inter[g, :s, :m].abs().amax(1, keepdim=True) + 1e-8) / rho[g, :s]
        torch.testing.assert_close(torch.softmax(inter[g, :s, :m] / scale, 1),
                                   interaction_target(inter[g, :s, :m], err[g, :s, :m], 0.1, row_err))
    if with_mean_stderr:  # the row means' errors change rho where a sentence has 2 moments or more
        assert not torch.allclose(rho, padded_reliability(inter, err, present))


@pytest.mark.parametrize("kernels", ["numba", "torch"])
def test_the_loss_is_the_one_computed_video_by_video(kernels):
    # Either estimator, called on the list of games, pads them as the loss does and draws the same
    # coalitions (the same seed): the batched loss is the mean over sentences of interaction_target's
    # cross-entropy, with the row means' errors in the reliability.
    from g2l.losses.ssi import ShapleyInteractionLoss, moment_games
    from g2l.ops import shapley, shapley_torch

    torch.set_num_threads(1)
    cell, sent, sv, _, closeness = gcl_case(5, 3, 20, 6)[:5]
    loss = ShapleyInteractionLoss(num_players=3, num_samples=64, tau=0.1, seed=2, kernels=kernels)
    value = float(loss(per_video_cosine(sent, cell, sv), sv, closeness, len(cell), step=3))
    games = moment_games(per_video_cosine(sent, cell, sv), sv, closeness, 3, len(cell))  # (s_v m_v)
    estimator = shapley_torch.pairwise_interaction_batch if kernels == "torch" else shapley.pairwise_interaction_batch
    players = [g.detach() if kernels == "torch" else g.detach().numpy() for g in games]
    estimates = estimator(players, 64, seed=2 * 1_000_003 + 3, tau=0.1, return_mean_stderr=True)
    per_sentence = {True: [], False: []}
    for sims, inter, err, mean_err in zip(games, *(map(torch.as_tensor, part) for part in estimates)):
        inter, err, mean_err = inter.float(), err.float(), mean_err.float()
        for with_mean in per_sentence:
            target = interaction_target(inter, err, 0.1, mean_err if with_mean else None)
            per_sentence[with_mean].append(-(target * torch.log_softmax(sims.detach() / 0.1, 1)).sum(1))
    expected = {k: float(torch.cat(v).mean()) for k, v in per_sentence.items()}
    assert value == pytest.approx(expected[True], rel=1e-5)
    assert value != pytest.approx(expected[False], rel=1e-5)  # without the row means' errors: another loss


def test_games_that_are_not_finite_give_a_loss_that_is_not():
    from g2l.losses.ssi import ShapleyInteractionLoss

    cell, sent, sv, _, closeness = gcl_case(3, 3, 12, 6)[:5]
    sent = sent.clone()
    sent[0, 0] = float("nan")
    loss_fn = ShapleyInteractionLoss(num_players=3, num_samples=32, tau=0.1, kernels="torch")
    loss = loss_fn(per_video_cosine(sent, cell, sv), sv, closeness, len(cell))
    assert torch.isnan(loss)  # training reports it as diverged, with its one sentence
