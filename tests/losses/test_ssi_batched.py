"""L_SSI batched over videos (g2l/losses/ssi.py): the padded games are each video's game, the
batched reliability is estimate_reliability sentence by sentence, and the loss equals the one
computed video by video from the same estimates."""

import numpy as np
import pytest
import torch

from g2l.losses.ssi import estimate_reliability, interaction_target, padded_games, padded_reliability
from tests.losses.test_gcl import case as gcl_case


def test_padded_games_are_each_videos_game():
    cell, sent, sv, _, closeness = gcl_case(3, 4, 20, 6)[:5]
    games = padded_games(cell, sent, sv, closeness, 3)
    assert len(games.shapes) == 4 and games.finite
    for v, (s, m) in enumerate(games.shapes):
        rows = torch.nonzero(sv == v).flatten()
        sims = sent[rows] @ cell[v].T  # (s C)
        k = 3
        chosen = torch.unique(torch.cat([closeness[rows].topk(k, 1).indices.flatten(), sims.topk(k, 1).indices.flatten()]))
        assert (s, m) == (rows.numel(), chosen.numel())
        torch.testing.assert_close(games.cos[v, :s, :m], sims[:, chosen])
        assert games.present[v, :s, :m].all() and games.present[v].sum() == s * m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_padded_reliability_is_estimate_reliability_per_sentence(seed):
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
    rho = padded_reliability(inter, err, present)
    for g, (s, m) in enumerate(shapes):
        torch.testing.assert_close(rho[g, :s], estimate_reliability(inter[g, :s, :m], err[g, :s, :m]))
        # and so the targets are interaction_target's
        scale = 0.1 * (inter[g, :s, :m].abs().amax(1, keepdim=True) + 1e-8) / rho[g, :s]
        torch.testing.assert_close(torch.softmax(inter[g, :s, :m] / scale, 1),
                                   interaction_target(inter[g, :s, :m], err[g, :s, :m], 0.1))


def test_games_that_are_not_finite_give_a_loss_that_is_not():
    from g2l.losses.ssi import ShapleyInteractionLoss

    cell, sent, sv, _, closeness = gcl_case(3, 3, 12, 6)[:5]
    sent = sent.clone()
    sent[0, 0] = float("nan")
    loss = ShapleyInteractionLoss(num_players=3, num_samples=32, tau=0.1, kernels="torch")(cell, sent, sv, closeness)
    assert torch.isnan(loss)  # training reports it as diverged, with its one sentence
