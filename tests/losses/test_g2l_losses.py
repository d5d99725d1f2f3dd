import math

import numpy as np
import pytest
import torch

from g2l.losses.ssi import ShapleyInteractionLoss, estimate_reliability, interaction_target, select_moment_players
from g2l.models.grounding import per_video_cosine
from g2l.ops.shapley import pairwise_interaction_batch
from tests.losses.test_gcl import case as gcl_case


def case(seed=0, b=3, cells=12, d=6):
    """test_gcl's random case without its ground-truth column: (cell, sent, sv, ious, closeness)."""
    return gcl_case(seed, b, cells, d)[:5]


def test_player_selection_is_the_deduplicated_union():
    closeness = torch.tensor([[1.0, 0.9, 0.0, 0.0, 0.1], [0.0, 0.2, 1.0, 0.0, 0.0]])
    similarity = torch.tensor([[0.0, 0.5, 0.1, 0.9, 0.0], [0.8, 0.0, 0.7, 0.0, 0.0]])
    chosen = select_moment_players(closeness, similarity, 2)
    # closeness: {0, 1} and {2, 1}; similarity: {3, 1} and {0, 2}.
    assert chosen.tolist() == [0, 1, 2, 3]


def test_ssi_targets_from_interactions_and_gradient_through_alignment_only():
    cell, sent, sv, ious, closeness = case(4, cells=20)
    cell.requires_grad_(True), sent.requires_grad_(True)
    loss_fn = ShapleyInteractionLoss(num_players=3, num_samples=200, tau=0.1, seed=7)
    loss = loss_fn(per_video_cosine(sent, cell, sv), sv, closeness, len(cell), step=5)
    # Independent recomputation, video by video: the confidence target t = softmax(rho I / (tau (max |I| + 1e-8))),
    # rho = max(0, 1 - noise / var I) (kept >= 1e-6), noise = m / (m - 1) (mean se^2 - se_mean^2),
    # and the alignment A = softmax(cos / tau).
    players = [(sent[sv == v] @ cell[v].T).detach()[:, select_moment_players(closeness[sv == v], (sent[sv == v] @ cell[v].T).detach(), 3)].numpy()
               for v in range(3)]
    interactions, errors, mean_errors = pairwise_interaction_batch(players, 200, seed=7 * 1_000_003 + 5, tau=0.1,
                                                                   return_mean_stderr=True)
    per_sentence = []
    for v in range(3):
        r = torch.nonzero(sv == v).flatten()
        sims = (sent[r] @ cell[v].T).detach()
        chosen = select_moment_players(closeness[r], sims, 3)
        inter = torch.as_tensor(interactions[v], dtype=torch.float32)
        se = torch.as_tensor(errors[v], dtype=torch.float32)
        se_mean = torch.as_tensor(mean_errors[v], dtype=torch.float32)[:, None]
        m = inter.shape[1]
        noise = m / (m - 1) * (se.pow(2).mean(1, keepdim=True) - se_mean.pow(2)).clamp(min=0)
        rho = (1 - noise / inter.var(1, keepdim=True)).clamp(1e-6, 1)
        target = torch.softmax(rho * inter / (0.1 * (inter.abs().amax(1, keepdim=True) + 1e-8)), dim=1)
        per_sentence.append(-(target * torch.log_softmax(sims[:, chosen] / 0.1, dim=1)).sum(dim=1))
    assert np.isfinite(float(loss.detach()))
    assert float(loss.detach()) == pytest.approx(float(torch.cat(per_sentence).mean()), rel=1e-5)
    loss.backward()
    assert cell.grad.abs().sum() > 0 and sent.grad.abs().sum() > 0
    # The same step gives the same loss; another step draws other coalitions.
    again = loss_fn(per_video_cosine(sent.detach(), cell.detach(), sv), sv, closeness, len(cell), step=5)
    assert float(again) == float(loss.detach())
    other_step = loss_fn(per_video_cosine(sent.detach(), cell.detach(), sv), sv, closeness, len(cell), step=6)
    assert float(other_step) != float(loss.detach())


def test_ssi_pulls_alignment_towards_cooperating_moments():
    # A few gradient steps on the sentence feature alone lower the loss (the target is fixed per step).
    cell, sent, sv, ious, closeness = case(5, cells=20)
    sent = sent.clone().requires_grad_(True)
    loss_fn = ShapleyInteractionLoss(num_players=3, num_samples=100, tau=0.1, seed=1)
    first = float(loss_fn(per_video_cosine(sent, cell, sv), sv, closeness, len(cell), step=0).detach())
    opt = torch.optim.SGD([sent], lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        loss_fn(per_video_cosine(sent, cell, sv), sv, closeness, len(cell), step=0).backward()
        opt.step()
    assert float(loss_fn(per_video_cosine(sent, cell, sv), sv, closeness, len(cell), step=0).detach()) < first


def test_reliability_is_the_share_of_spread_that_is_not_noise():
    inter = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    spread = inter[0].var()  # 5/3
    exact = torch.zeros(2, 4)
    noisy = torch.full((2, 4), 0.5)
    assert estimate_reliability(inter, exact)[0, 0] == pytest.approx(1.0)
    assert estimate_reliability(inter, noisy)[0, 0] == pytest.approx(1 - 0.25 / float(spread))
    assert estimate_reliability(inter, noisy)[1, 0] == pytest.approx(1e-6)  # no spread: all noise
    assert estimate_reliability(inter[:, :1], exact[:, :1]).flatten().tolist() == pytest.approx([1e-6, 1e-6])


def test_confidence_target_flattens_noisy_estimates():
    # The same interactions: exact -> the fixed sharpness; noisy -> flatter; pure noise -> uniform.
    inter = torch.tensor([[0.0, 0.01, 0.02, 0.04]])
    fixed = interaction_target(inter, None, 0.1)
    assert torch.allclose(interaction_target(inter, torch.zeros(1, 4), 0.1), fixed)

    def entropy(t):
        return float(-(t * t.log()).sum())

    noisy = interaction_target(inter, torch.full((1, 4), 0.01), 0.1)
    assert entropy(fixed) < entropy(noisy) < math.log(4)
    uniform = interaction_target(inter, torch.full((1, 4), 1.0), 0.1)
    assert torch.allclose(uniform, torch.full((1, 4), 0.25), atol=1e-4)
