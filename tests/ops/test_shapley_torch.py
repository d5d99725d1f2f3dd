"""The batched torch twin of the stratified Shapley interaction estimator (g2l/ops/shapley_torch.py):
against exact enumeration (unbiased over seeds, calibrated standard errors), on padded batches of
games of different sizes, chunked or not, and its contract (devices, dtypes, seeding, errors)."""

import numpy as np
import pytest
import torch

from g2l.ops import shapley_torch
from tests.reference.shapley_interaction import exact_pairwise_interaction


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
    # max_elements elements (or one row), and the grouping costs no more than leaving strata of
    # different sizes apart.
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
        bins = {}  # (t, q) -> rows, widest game: chunks of one bin each are the unmerged baseline
        for chunk in plan.chunks:
            rows = range(chunk.start, chunk.stop)
            dims = np.array([largest[plan.stratum[r]] for r in rows])  # (r 4): t, q, m, s per row
            assert (dims <= [chunk.others, chunk.slots, chunk.width, chunk.sentences]).all()
            assert chunk.elements() <= max_elements or len(rows) == 1
            for t, q, m, _ in dims:
                count, width = bins.get((t, q), (0, 0))
                bins[t, q] = (count + 1, max(width, m))
        # Merging strata pays: padded elements plus the overhead per chunk never exceed the
        # unmerged baseline's (the grouping is the optimum over the bins' order).
        overhead = shapley_torch.CHUNK_OVERHEAD["other"]

        def cost(rows, per_row):  # a bin alone: its elements and its chunks of at most max_elements
            return rows * per_row + overhead * -(-rows // max(1, max_elements // per_row))

        baseline = sum(cost(n, shapley_torch.chunk_row_elements(t, q, w)) for (t, q), (n, w) in bins.items())
        merged = sum(chunk.elements() for chunk in plan.chunks) + overhead * len(plan.chunks)
        assert merged <= baseline + 1e-6


def test_no_allocation_exceeds_the_chunk_bound():
    # Measured, not planned: the largest tensor allocated by any operation is one chunk's
    # (r a q+3 e) tensor, at most max_elements float64 elements (or a stack of 4 of its column sums),
    # or (4 rows e) coefficients of the draws of the whole batch (drawn at once).
    from torch.profiler import profile

    sims = [random_sim(6, 40, seed=0), random_sim(3, 17, seed=1)]
    for max_elements in (1 << 12, 1 << 16):
        with profile(profile_memory=True) as prof:
            shapley_torch.pairwise_interaction_batch(sims, 64, max_elements=max_elements)
        largest = max(event.cpu_memory_usage for event in prof.events())
        plan = shapley_torch.plan_chunks([sim.shape for sim in sims], 64, max_elements)
        one_row = max(shapley_torch.chunk_row_elements(c.others, c.slots, c.width) for c in plan.chunks)
        sums = plan.group_task.size * 40
        draws = plan.game.size * (40 + 2)  # the per-row draws of the whole batch: (rows e) each, e = m + 2
        # a chunk stacks at most 4 tensors of its (r q+3 e) column sums; the rows' 4 coefficients
        assert 0 < largest <= 8 * 4 * max(max_elements, one_row, sums, draws)


@pytest.mark.parametrize("gap", [40, 60, 300, 690])
def test_exact_enough_when_one_moment_dominates_its_sentence(gap):
    # Each sentence has one moment whose logit is ``gap`` above the rest (a per-sentence logit range
    # of up to gap + 5, within the 700 the input check allows): removing it leaves weights
    # exp(-gap) times smaller, which a "sum minus the removed column" loses entirely (the error was
    # 0.078 at a gap of 40 and 0.14 at 60 on this game). Every estimate stays within a few of its
    # standard errors of the exact index, at every gap, as the Numba kernel does.
    tau = 0.1
    sim = np.random.default_rng(7).uniform(0.0, 0.5, size=(3, 6))
    for j in range(3):
        sim[j, 2 * j] += gap * tau
    exact = exact_pairwise_interaction(sim, tau)
    (estimate,), (stderr,) = shapley_torch.pairwise_interaction_batch([sim], 1024, seed=11, tau=tau, return_stderr=True)
    z = np.abs(estimate - exact) / (stderr + 1e-12)
    assert np.abs(exact).max() > 0.05  # the game's interactions are not all tiny
    assert z.max() < 5, (z.max(), np.abs(estimate - exact).max())
    assert stderr.max() < 0.05
