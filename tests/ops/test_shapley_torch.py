"""The batched torch twin of the stratified Shapley interaction estimator (g2l/ops/shapley_torch.py):
against exact enumeration (unbiased over seeds, calibrated standard errors), on padded batches of
games of different sizes, chunked or not, and its contract (devices, dtypes, seeding, errors)."""

import numpy as np
import pytest
import torch

from g2l.ops import shapley_torch
from tests.support.shapley_reference import exact_pairwise_interaction


def random_sim(num_sentences, num_moments, seed):
    return np.random.default_rng(seed).uniform(-0.2, 0.9, size=(num_sentences, num_moments))


@pytest.mark.parametrize("max_elements", [shapley_torch.DEFAULT_MAX_ELEMENTS, 1])
def test_unbiased_and_calibrated_on_a_padded_batch(max_elements):
    # One batch of games of different shapes (padded to s = 4, m = 6): every game's estimate is
    # unbiased for its own exact index and its standard error matches the spread over seeds.
    shapes = [(2, 6), (4, 3), (1, 5)]
    sims = [random_sim(*shape, seed=20 + g) for g, shape in enumerate(shapes)]
    exact = [exact_pairwise_interaction(sim, 0.1) for sim in sims]
    runs = [shapley_torch.pairwise_interaction_batch(sims, 16, seed=seed, return_stderr=True, max_elements=max_elements)
            for seed in range(200 if max_elements > 1 else 60)]
    for g in range(len(shapes)):
        estimates = np.array([run[0][g] for run in runs])
        stderrs = np.array([run[1][g] for run in runs])
        spread = estimates.std(axis=0, ddof=1)
        z = (estimates.mean(axis=0) - exact[g]) / (spread / np.sqrt(len(runs)) + 1e-15)
        assert np.abs(z).max() < 4.5
        ratio = stderrs.mean(axis=0) / (spread + 1e-15)
        assert np.all((ratio > 0.6) & (ratio < 1.5)) or spread.max() < 1e-12


def test_converges_to_exact():
    sim = random_sim(3, 5, seed=1)
    exact = exact_pairwise_interaction(sim, 0.1)
    (estimate,), (stderr,) = shapley_torch.pairwise_interaction_batch([sim], 4096, seed=3, return_stderr=True)
    assert (np.abs(estimate - exact) <= 4.5 * stderr + 1e-12).all()
    assert stderr.max() < 2e-3


def test_exact_when_every_stratum_is_one_coalition():
    sims = [random_sim(2, 2, seed=0), random_sim(1, 1, seed=1), random_sim(2, 1, seed=2)]
    out, err = shapley_torch.pairwise_interaction_batch(sims, 8, seed=0, return_stderr=True)
    for sim, estimate, stderr in zip(sims, out, err):
        np.testing.assert_allclose(estimate, exact_pairwise_interaction(sim, 0.1), rtol=0, atol=1e-12)
        assert not stderr.any()


def test_tensors_in_tensors_out_seeded_and_empty_games():
    sims = [torch.tensor(random_sim(2, 4, seed=0), dtype=torch.float32, requires_grad=True), torch.zeros(0, 3)]
    out, err = shapley_torch.pairwise_interaction_batch(sims, 64, seed=5, return_stderr=True)
    assert [tuple(o.shape) for o in out] == [(2, 4), (0, 3)] and [tuple(e.shape) for e in err] == [(2, 4), (0, 3)]
    assert out[0].dtype == torch.float32 and out[0].device == sims[0].device and not out[0].requires_grad
    again = shapley_torch.pairwise_interaction_batch(sims, 64, seed=5)
    assert torch.equal(out[0], again[0])
    assert not torch.equal(out[0], shapley_torch.pairwise_interaction_batch(sims, 64, seed=6)[0])


def test_bad_input_is_refused():
    sim = random_sim(2, 3, seed=0)
    with pytest.raises(ValueError, match="tau"):
        shapley_torch.pairwise_interaction_batch([sim], 10, tau=0.0)
    with pytest.raises(ValueError, match="num_samples"):
        shapley_torch.pairwise_interaction_batch([sim], 0)
    with pytest.raises(ValueError, match="matrix"):
        shapley_torch.pairwise_interaction_batch([sim[0]], 10)
    with pytest.raises(ValueError, match="NaN"):
        shapley_torch.pairwise_interaction_batch([np.full((2, 2), np.nan)], 10)
    with pytest.raises(ValueError, match="stratified"):
        shapley_torch.pairwise_interaction_batch([sim], 10, method="plain")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_the_exact_index():
    sim = torch.tensor(random_sim(3, 5, seed=1), device="cuda")
    (estimate,), (stderr,) = shapley_torch.pairwise_interaction_batch([sim], 4096, seed=3, return_stderr=True)
    assert estimate.device.type == "cuda"
    exact = torch.tensor(exact_pairwise_interaction(sim.cpu().numpy(), 0.1), dtype=torch.float32)
    assert ((estimate.cpu() - exact).abs() <= 4.5 * stderr.cpu() + 1e-6).all()
