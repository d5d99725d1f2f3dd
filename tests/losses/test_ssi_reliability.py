"""L_SSI's reliability rho_j reads the noise that the estimator's shared draws leave in a sentence's
spread across moments (g2l/losses/ssi.py, ``estimate_reliability``).

One stratified draw serves every moment of a sentence, so the errors e_i of a row of estimates are
correlated. What sampling adds to the row's spread is ``E[var_i e_i] = (sum_i Var e_i - m Var(mean_i
e_i)) / (m - 1)``; the estimators return ``se(mean_i I_ji)`` for it. Checked here against the
spread of many independent estimates of one game whose exact interactions are known (exact
enumeration): the former noise, ``mean_i se_i^2``, overstates it on this game by 15-23% (the
empirical noise is 0.82-0.87 of it over ten estimator seeds); the new one is within 4% (0.97-1.03),
and the tests allow 8% (about three standard deviations of the ratio over estimator seeds).
"""

import math

import numpy as np
import pytest
import torch

from g2l.losses.ssi import estimate_reliability
from g2l.ops import shapley, shapley_torch
from tests.reference.shapley_interaction import exact_pairwise_interaction, plain_pairwise_interaction_batch

TOLERANCE = 0.08
REPLICATES = 400  # copies of the game in one batch: each game index has its own random streams


def clustered_game(seed: int = 2, num_sentences: int = 3, num_moments: int = 8, dim: int = 8) -> np.ndarray:
    """``(s m)`` cosines of unit sentence features and moment features drawn near one of them."""
    rng = np.random.default_rng(seed)
    sentences = rng.normal(size=(num_sentences, dim))
    sentences /= np.linalg.norm(sentences, axis=1, keepdims=True)
    moments = rng.normal(size=(num_moments, dim)) + 1.5 * sentences[rng.integers(0, num_sentences, num_moments)]
    moments /= np.linalg.norm(moments, axis=1, keepdims=True)
    return sentences @ moments.T


@pytest.mark.parametrize("kernel", ["numba", "torch", "torch padded"])
def test_noise_across_moments_matches_repeated_estimates(kernel):
    # "torch padded": a larger game (5 sentences, 12 moments) first in the batch pads every copy of
    # the game; its row means must be over the copy's own 8 moments (padded ones left out).
    torch.set_num_threads(1)
    sim = clustered_game()
    num_moments = sim.shape[1]
    exact = exact_pairwise_interaction(sim, 0.1)  # (s m)
    estimator = shapley.pairwise_interaction_batch if kernel == "numba" else shapley_torch.pairwise_interaction_batch
    larger = [clustered_game(5, 5, 12)] if kernel == "torch padded" else []
    estimates, stderr, mean_stderr = (np.stack(part[len(larger):]) for part in estimator(
        larger + [sim] * REPLICATES, 256, seed=0, tau=0.1, return_mean_stderr=True))  # (R s m), (R s m), (R s)
    errors = estimates - exact
    # Summed over the sentences: the empirical spread of the errors across moments, and each formula.
    empirical = errors.var(axis=2, ddof=1).mean(0).sum()
    former = (stderr**2).mean(2).mean(0).sum()
    predicted = (num_moments / (num_moments - 1) * ((stderr**2).mean(2) - mean_stderr**2)).mean(0).sum()
    assert empirical / predicted == pytest.approx(1.0, abs=TOLERANCE)
    assert abs(empirical / former - 1.0) > TOLERANCE  # the errors are correlated: the former noise is too large
    # The row means' standard error itself: the errors of mean_i I_ji over the replicates.
    row_mean_error = (errors.mean(2) ** 2).mean(0).sum() / (mean_stderr**2).mean(0).sum()
    assert row_mean_error == pytest.approx(1.0, abs=0.1)


def test_plain_estimator_row_mean_error_is_that_of_independent_pairs():
    sims = [clustered_game(0, 2, 5), np.zeros((3, 0)), clustered_game(1, 1, 4)]
    estimates, stderr, mean_stderr = plain_pairwise_interaction_batch(sims, 64, seed=1, return_mean_stderr=True)
    for err, mean_err, sim in zip(stderr, mean_stderr, sims):
        assert mean_err.shape == (sim.shape[0],)
        expected = np.sqrt((err**2).sum(axis=1)) / max(sim.shape[1], 1)
        np.testing.assert_allclose(mean_err, expected, rtol=1e-12)


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_row_mean_errors_follow_the_games_and_the_input_type(kernel):
    estimator = shapley.pairwise_interaction_batch if kernel == "numba" else shapley_torch.pairwise_interaction_batch
    sims = [clustered_game(0, 2, 5), np.zeros((2, 0)), clustered_game(1, 1, 4)]
    _, stderr, mean_stderr = estimator(sims, 32, seed=3, return_mean_stderr=True)
    assert [e.shape for e in mean_stderr] == [(2,), (2,), (1,)]
    assert np.all(mean_stderr[1] == 0)  # no moments: nothing estimated
    for err, mean_err in zip(stderr, mean_stderr):
        # At most that of fully shared errors, mean se (errors may also be anti-correlated: moments
        # compete in a softmax, so no lower bound but 0).
        shared = err.mean(1) if err.shape[1] else np.zeros(err.shape[0])
        assert np.all((mean_err >= 0) & (mean_err <= shared * (1 + 1e-6) + 1e-12))
    tensors = estimator([torch.as_tensor(sim) for sim in sims], 32, seed=3, return_mean_stderr=True)
    assert all(isinstance(part, torch.Tensor) and part.dtype == torch.float32 for part in tensors[2])
    assert len(estimator(sims, 32, seed=3, return_stderr=True)) == 2  # the former returns are unchanged


def test_reliability_by_hand():
    inter = torch.tensor([[0.0, 1.0, 2.0, 3.0]])  # var = 5/3
    stderr = torch.full((1, 4), 0.5)  # mean se^2 = 0.25
    # Independent errors (se_mean^2 = 0.25 / 4): noise = 4/3 (0.25 - 0.0625) = 0.25, the former mean se^2.
    assert float(estimate_reliability(inter, stderr, torch.tensor([0.25]))) == pytest.approx(1 - 0.25 / (5 / 3))
    assert float(estimate_reliability(inter, stderr)) == pytest.approx(1 - 0.25 / (5 / 3))
    # Correlated errors, se_mean = 0.4: noise = 4/3 (0.25 - 0.16) = 0.12.
    assert float(estimate_reliability(inter, stderr, torch.tensor([0.4]))) == pytest.approx(1 - 0.12 / (5 / 3))
    # Fully shared errors move the row without changing its spread: rho = 1.
    assert float(estimate_reliability(inter, stderr, torch.tensor([0.5]))) == pytest.approx(1.0)
    # Noise beyond the spread: rho floors at 1e-6; so does a single moment.
    assert float(estimate_reliability(inter, torch.full((1, 4), 3.0), torch.tensor([0.0]))) == pytest.approx(1e-6)
    assert float(estimate_reliability(inter[:, :1], stderr[:, :1], torch.tensor([0.5]))) == pytest.approx(1e-6)
    assert math.isfinite(float(estimate_reliability(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1))))
