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


def test_chunks_cover_every_draw_once_and_bound_their_elements():
    # The host plan: every (game, sentence, stratum) gets exactly its planned draws, in groups that
    # match; every chunk is sized for the strata of its rows (largest t, k, m, s), holds at most
    # max_elements elements (or one row) and pads at most 1.5 times its rows' own sizes (or is small).
    from g2l.ops.shapley_plan import stratified_plan

    shapes = [(6, 40), (3, 17), (0, 4), (1, 9), (8, 80)]
    for max_elements in (1 << 12, 1 << 16, 1 << 20):
        plan = shapley_torch.plan_chunks(shapes, 96, max_elements)
        assert plan.chunks[0].start == 0 and plan.chunks[-1].stop == plan.game.size
        assert all(a.stop == b.start and a.stop > a.start for a, b in zip(plan.chunks, plan.chunks[1:]))
        counts = {}
        for g, j, stratum, group in zip(plan.game, plan.j, plan.stratum, plan.group):
            counts[g, j, stratum, group] = counts.get((g, j, stratum, group), 0) + 1
        expected, first_stratum, first_group = {}, 0, 0
        largest = {}
        for g, (s, m) in enumerate(shapes):
            if s * m == 0:
                continue
            game_plan = stratified_plan(s, m, 96)
            strata = game_plan.probability.size
            for h in range(strata):
                cells = slice(game_plan.cell_offsets[h], game_plan.cell_offsets[h + 1])
                largest[first_stratum + h] = (game_plan.cell_t[cells].max(), game_plan.cell_k[cells].max() + 1, m, s)
                for j in range(s):
                    expected[g, j, first_stratum + h, first_group + j * strata + h] = game_plan.draws[h]
            first_stratum += strata
            first_group += s * strata
        assert counts == expected
        for chunk in plan.chunks:
            rows = range(chunk.start, chunk.stop)
            dims = np.array([largest[plan.stratum[r]] for r in rows])  # (r 4): t, q, m, s per row
            assert (dims <= [chunk.others, chunk.slots, chunk.width, chunk.sentences]).all()
            assert chunk.elements() <= max_elements or len(rows) == 1
            own = sum(shapley_torch.chunk_row_elements(t, q, m) for t, q, m, _ in dims)
            assert chunk.elements() <= max(1.5 * own, 1 << 16)


def test_no_allocation_exceeds_the_chunk_bound():
    # Measured, not planned: the largest tensor allocated by any operation is one chunk's
    # (r T+1 q e) tensor (or the (groups m) sums), at most max_elements float64 elements.
    from torch.profiler import profile

    sims = [random_sim(6, 40, seed=0), random_sim(3, 17, seed=1)]
    for max_elements in (1 << 12, 1 << 16):
        with profile(profile_memory=True) as prof:
            shapley_torch.pairwise_interaction_batch(sims, 64, max_elements=max_elements)
        largest = max(event.cpu_memory_usage for event in prof.events())
        plan = shapley_torch.plan_chunks([sim.shape for sim in sims], 64, max_elements)
        one_row = max(shapley_torch.chunk_row_elements(c.others, c.slots, c.width) for c in plan.chunks)
        sums = plan.group_task.size * (1 + 40)  # (groups 1+m): each draw's total over its moments, then each moment
        assert 0 < largest <= 8 * max(max_elements, one_row, sums)
