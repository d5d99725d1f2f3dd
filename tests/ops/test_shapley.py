"""Pairwise Shapley interaction (docs/method.md section 3, "L_SSI"): exact enumeration against the
permutation definition, the axioms on general games, and the Monte Carlo estimator against the
exact values and against its plain-Python reference."""

import itertools
import math

import numba
import numpy as np
import pytest
import torch

from g2l.ops.shapley import context_probabilities, pairwise_interaction, pairwise_interaction_batch, stratified_plan
from tests.reference.shapley_interaction import (
    coalition_value,
    exact_interaction_from_value_table,
    exact_pairwise_interaction,
    game_value_table,
    plain_pairwise_interaction,
    plain_pairwise_interaction_batch,
    reference_pairwise_interaction_python,
)


def random_sim(num_sentences, num_moments, seed):
    return np.random.default_rng(seed).uniform(-0.2, 0.9, size=(num_sentences, num_moments))


def interaction_by_orderings(sim, tau, j, i):
    """Definition: average over every ordering of the n - 1 units (i and j merged) of the bracket
    at C = the players before the merged unit."""
    num_sentences, num_moments = sim.shape
    n = num_sentences + num_moments
    moment_i = num_sentences + i
    units = [p for p in range(n) if p not in (j, moment_i)] + ["ij"]

    def value(players):
        sentences = [p for p in players if p < num_sentences]
        moments = [p - num_sentences for p in players if p >= num_sentences]
        return coalition_value(sim, tau, sentences, moments)

    total, count = 0.0, 0
    for order in itertools.permutations(units):
        before = list(order[: order.index("ij")])
        total += value(before + [j, moment_i]) - value(before + [moment_i]) - value(before + [j]) + value(before)
        count += 1
    assert count == math.factorial(n - 1)
    return total / count


# ---------------------------------------------------------------------------------------------
# Value function and exact interaction
# ---------------------------------------------------------------------------------------------


def test_coalition_value_by_hand():
    sim = np.array([[1.0, 0.0], [0.0, 1.0]])
    # Each row's softmax (tau = 1) is (e, 1) / (e + 1): every max is e / (e + 1).
    assert coalition_value(sim, 1.0, [0, 1], [0, 1]) == pytest.approx(math.e / (1 + math.e), abs=1e-15)
    assert coalition_value(sim, 1.0, [0], [1]) == 1.0  # one moment: A = 1
    assert coalition_value(sim, 1.0, [], [0, 1]) == 0.0
    assert coalition_value(sim, 1.0, [0, 1], []) == 0.0
    # Absent players are removed, not masked: v({s0, s1, m0}) uses a 1-moment softmax.
    assert coalition_value(sim, 1.0, [0, 1], [0]) == 1.0


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (2, 2), (2, 3), (3, 2), (1, 5), (3, 3)])
def test_exact_equals_permutation_definition(shape):
    tau = 0.1
    sim = random_sim(*shape, seed=sum(shape))
    exact = exact_pairwise_interaction(sim, tau)
    assert exact.shape == shape
    for j in range(shape[0]):
        for i in range(shape[1]):
            assert exact[j, i] == pytest.approx(interaction_by_orderings(sim, tau, j, i), abs=1e-12)


def test_two_player_game():
    # n = 2: the only context is C = {} and I = v({i, j}) = 1.
    assert exact_pairwise_interaction(np.array([[0.3]]))[0, 0] == pytest.approx(1.0)
    mean, err = pairwise_interaction(np.array([[0.3]]), 50, return_stderr=True)
    assert mean[0, 0] == pytest.approx(1.0) and err[0, 0] == 0.0


def test_symmetric_players_get_equal_interactions():
    sim = random_sim(3, 5, seed=4)
    sim[:, 3] = sim[:, 1]  # moments 1 and 3 are interchangeable
    sim[2] = sim[0]  # sentences 0 and 2 are interchangeable
    exact = exact_pairwise_interaction(sim, 0.1)
    np.testing.assert_allclose(exact[:, 3], exact[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(exact[2], exact[0], rtol=0, atol=1e-12)


def test_axioms_on_general_games():
    rng = np.random.default_rng(0)
    n = 6
    base = rng.standard_normal(1 << (n - 1))
    base[0] = 0.0
    # Dummy player (index n-1): adds a constant to every coalition it joins.
    masks = np.arange(1 << n)
    values = base[masks & ((1 << (n - 1)) - 1)] + 0.7 * ((masks >> (n - 1)) & 1)
    interaction = exact_interaction_from_value_table(values)
    np.testing.assert_allclose(interaction[n - 1], 0.0, atol=1e-12)
    # An additive game has no interactions at all.
    worth = rng.standard_normal(n)
    additive = np.array([sum(worth[p] for p in range(n) if m >> p & 1) for m in masks])
    np.testing.assert_allclose(exact_interaction_from_value_table(additive), 0.0, atol=1e-12)
    # Symmetric players 0 and 1 (the value depends on them only through their count).
    swapped = masks ^ ((((masks >> 0) ^ (masks >> 1)) & 1) * 0b11)  # exchange bits 0 and 1
    symmetric = rng.standard_normal(1 << n)
    symmetric = symmetric + symmetric[swapped]
    interaction = exact_interaction_from_value_table(symmetric)
    np.testing.assert_allclose(interaction[0, 2:], interaction[1, 2:], atol=1e-12)
    # Pure pairwise synergy: v(C) = [0 and 1 in C] gives I(0, 1) = 1 and nothing else.
    synergy = ((masks & 0b11) == 0b11).astype(float)
    interaction = exact_interaction_from_value_table(synergy)
    expected = np.zeros((n, n))
    expected[0, 1] = expected[1, 0] = 1.0
    np.testing.assert_allclose(interaction, expected, atol=1e-12)


def test_value_table_of_the_game_matches_coalition_value():
    sim = random_sim(2, 3, seed=1)
    table = game_value_table(sim, 0.1)
    assert table[0b10110] == pytest.approx(coalition_value(sim, 0.1, [1], [0, 2]))


# ---------------------------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 4), (2, 5), (3, 7)])
def test_monte_carlo_converges_to_exact(shape):
    sim = random_sim(*shape, seed=10 + shape[1])
    exact = exact_pairwise_interaction(sim, 0.1)
    estimate, stderr = pairwise_interaction(sim, 10_000, seed=3, return_stderr=True)
    assert (stderr > 0).all()
    assert (np.abs(estimate - exact) <= 4 * stderr).all()
    errors = [np.abs(pairwise_interaction(sim, samples, seed=3) - exact).mean() for samples in (100, 10_000)]
    assert errors[1] < errors[0] / 3  # ~ 1 / sqrt(samples): 10x expected


def test_monte_carlo_reproducible_and_seeded():
    sim = random_sim(3, 6, seed=2)
    a = pairwise_interaction(sim, 500, seed=7)
    np.testing.assert_array_equal(a, pairwise_interaction(sim, 500, seed=7))
    assert not np.array_equal(a, pairwise_interaction(sim, 500, seed=8))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread = pairwise_interaction(sim, 500, seed=7)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(a, one_thread)


@pytest.mark.parametrize("shape,seed", [((1, 1), 0), ((1, 3), 1), ((3, 2), 2), ((2, 6), 3)])
def test_numba_kernel_equals_python_reference(shape, seed):
    sim = random_sim(*shape, seed=seed)
    mean, err = plain_pairwise_interaction(sim, 300, seed=seed, tau=0.1, return_stderr=True)
    ref_mean, ref_err = reference_pairwise_interaction_python(sim, 300, seed=seed, tau=0.1, return_stderr=True)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(err, ref_err, rtol=1e-9, atol=1e-14)


def test_batch_equals_single_games():
    sims = [random_sim(2, 4, seed=0), random_sim(1, 3, seed=1), np.zeros((0, 3)), random_sim(3, 2, seed=2)]
    batch = pairwise_interaction_batch(sims, 200, seed=5)
    assert [b.shape for b in batch] == [(2, 4), (1, 3), (0, 3), (3, 2)]
    np.testing.assert_array_equal(batch[0], pairwise_interaction(sims[0], 200, seed=5))
    plain = plain_pairwise_interaction_batch(sims, 200, seed=5)
    for g in (1, 3):  # game g draws from the streams keyed by g
        ref = reference_pairwise_interaction_python(sims[g], 200, seed=5, game=g)
        np.testing.assert_allclose(plain[g], ref, rtol=0, atol=1e-12)


def test_torch_in_torch_out():
    sim = torch.tensor(random_sim(2, 3, seed=0), dtype=torch.float32, requires_grad=True)
    out, err = pairwise_interaction(sim, 100, return_stderr=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and not out.requires_grad
    np.testing.assert_allclose(out.numpy(), pairwise_interaction(sim.detach().double().numpy(), 100), rtol=1e-6)


def test_invalid_input_raises_clear_errors():
    sim = random_sim(2, 3, seed=0)
    with pytest.raises(ValueError, match="tau"):
        pairwise_interaction(sim, 10, tau=0.0)
    with pytest.raises(ValueError, match="num_samples"):
        pairwise_interaction(sim, 0)
    with pytest.raises(ValueError, match="matrix"):
        pairwise_interaction(sim[0], 10)
    with pytest.raises(ValueError, match="NaN"):
        pairwise_interaction(np.full((2, 2), np.nan), 10)
    with pytest.raises(ValueError, match="raise tau"):
        pairwise_interaction(sim, 10, tau=1e-4)
    with pytest.raises(ValueError, match="too large"):
        exact_pairwise_interaction(random_sim(5, 20, seed=0))


# ---------------------------------------------------------------------------------------------
# The stratified estimator (the default)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (3, 4), (4, 3), (2, 6)])
def test_context_probabilities_are_the_law_of_the_context(shape):
    # Brute force: every context C of a pair (j, i) has weight |C|! (n-|C|-2)! / (n-1)!; count them
    # by (t other sentences, k other moments).
    s, m = shape
    n = s + m
    expected = np.zeros((s, m))
    for mask in range(1 << (n - 2)):  # the other players: s - 1 sentences, then m - 1 moments
        t = bin(mask & ((1 << (s - 1)) - 1)).count("1")
        k = bin(mask >> (s - 1)).count("1")
        size = t + k
        expected[t, k] += math.factorial(size) * math.factorial(n - size - 2) / math.factorial(n - 1)
    table = context_probabilities(s, m)
    assert table.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(table, expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("shape,samples", [((4, 56), 512), ((27, 120), 512), ((130, 400), 512), ((3, 5), 16),
                                           ((6, 30), 20), ((1, 1), 8)])
def test_plan_partitions_the_cells_and_spends_the_samples(shape, samples):
    s, m = shape
    plan = stratified_plan(s, m, samples)
    cells = set(zip(plan.cell_t.tolist(), plan.cell_k.tolist()))
    assert len(cells) == plan.cell_t.size == s * m  # every (t, k) in exactly one stratum
    np.testing.assert_allclose(plan.probability.sum(), 1.0, atol=1e-12)
    grid = context_probabilities(s, m)
    for h in range(plan.probability.size):
        lo, hi = plan.cell_offsets[h], plan.cell_offsets[h + 1]
        p = grid[plan.cell_t[lo:hi], plan.cell_k[lo:hi]]
        assert plan.probability[h] == pytest.approx(p.sum(), rel=1e-12)
        np.testing.assert_allclose(plan.cell_cumulative[lo:hi], np.cumsum(p) / p.sum(), rtol=1e-9)
    assert plan.draws.min() >= 1
    if s * m > 4:
        assert plan.draws.sum() == samples  # every floor fits in these budgets
    else:  # a single coalition per stratum: one draw each is exact
        assert (plan.draws == 1).all()


def test_work_grows_polynomially_in_the_sentences():
    # Multiply-adds of all brackets of one game (every sentence, every moment, every draw) from the
    # plan; the former estimator enumerated 2^(s-1) sentence subsets, a factor 2^8 from 8 to 16.
    m = 56
    work = {s: s * stratified_plan(s, m, 512).multiply_adds(m) for s in (4, 8, 16, 32)}
    assert work[16] / work[8] < 8 and work[32] / work[16] < 8  # below cubic in s
    assert work[8] > work[4]  # it does grow: more pairs, larger coalitions


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 2), (2, 1)])
def test_stratified_is_exact_when_every_stratum_is_one_coalition(shape):
    # With s <= 2 and m <= 2 the only counts are t in {0, s-1} and k in {0, m-1}, each a single
    # coalition: no randomness is left.
    sim = random_sim(*shape, seed=11)
    for seed in (0, 1):
        estimate, stderr = pairwise_interaction(sim, 8, seed=seed, return_stderr=True)
        np.testing.assert_allclose(estimate, exact_pairwise_interaction(sim, 0.1), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(stderr, np.zeros(shape))


@pytest.mark.parametrize("shape", [(2, 6), (3, 5), (1, 9), (5, 4)])
def test_stratified_is_unbiased_and_its_standard_error_is_calibrated(shape):
    sim = random_sim(*shape, seed=sum(shape))
    exact = exact_pairwise_interaction(sim, 0.1)
    runs = np.array([pairwise_interaction(sim, 16, seed=seed, return_stderr=True) for seed in range(300)])
    estimates, stderrs = runs[:, 0], runs[:, 1]
    spread = estimates.std(axis=0, ddof=1)
    z = (estimates.mean(axis=0) - exact) / (spread / np.sqrt(len(runs)) + 1e-15)
    assert np.abs(z).max() < 4.5  # unbiased: the mean of 300 runs sits within a few standard errors
    ratio = stderrs.mean(axis=0) / (spread + 1e-15)
    assert np.all((ratio > 0.6) & (ratio < 1.5)) or spread.max() < 1e-12


def test_stratified_beats_plain_sampling_at_equal_samples():
    sim = random_sim(3, 9, seed=4)
    exact = exact_pairwise_interaction(sim, 0.1)
    def rms(estimator):
        return np.sqrt(np.mean([(estimator(sim, 64, seed=s) - exact) ** 2 for s in range(20)]))
    assert rms(pairwise_interaction) < 0.5 * rms(plain_pairwise_interaction)


def test_stratified_converges_and_is_seeded():
    sim = random_sim(2, 10, seed=6)
    exact = exact_pairwise_interaction(sim, 0.1)
    errors = [np.abs(pairwise_interaction(sim, samples, seed=3) - exact).max() for samples in (32, 4096)]
    assert errors[1] < errors[0] / 4 and errors[1] < 2e-3
    a = pairwise_interaction(sim, 64, seed=7)
    np.testing.assert_array_equal(a, pairwise_interaction(sim, 64, seed=7))
    assert not np.array_equal(a, pairwise_interaction(sim, 64, seed=8))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        pairwise_interaction(random_sim(2, 3, seed=0), 10, method="fast")


# ---------------------------------------------------------------------------------------------
# Shapley values of a general game (the word explanation, g2l/explain.py)
# ---------------------------------------------------------------------------------------------

from g2l.ops.shapley_values import exact_shapley_from_value_table, shapley_values  # noqa: E402


def shapley_by_orderings(values, n):
    """Definition: the mean over all n! orderings of each player's marginal contribution."""
    out = np.zeros(n)
    orderings = list(itertools.permutations(range(n)))
    for order in orderings:
        mask = 0
        for player in order:
            out[player] += values[mask | (1 << player)] - values[mask]
            mask |= 1 << player
    return out / len(orderings)


def table_game(values):
    """A batched value function over (k n) boolean coalitions from a value table indexed by bitmask."""
    def value_of(coalitions):
        masks = (coalitions.astype(np.int64) << np.arange(coalitions.shape[1])).sum(axis=1)
        return values[masks]
    return value_of


@pytest.mark.parametrize("n", [1, 2, 5])
def test_exact_shapley_values_match_the_ordering_definition(n):
    values = np.random.default_rng(n).normal(size=1 << n)
    assert np.allclose(exact_shapley_from_value_table(values), shapley_by_orderings(values, n), atol=1e-12)


def test_shapley_axioms_on_a_random_game():
    n = 6
    rng = np.random.default_rng(0)
    values = rng.normal(size=1 << n)
    # Player 4 is a dummy (adds nothing), players 1 and 2 are symmetric (swapping them changes nothing).
    masks = np.arange(1 << n)
    values = values[masks & ~(1 << 4)]
    swapped = (masks & ~0b110) | ((masks >> 1) & 0b10) | ((masks << 1) & 0b100)
    values = 0.5 * (values + values[swapped])
    phi = shapley_values(table_game(values), n, max_exact_players=n).values
    assert phi.sum() == pytest.approx(values[-1] - values[0], abs=1e-12)  # efficiency
    assert phi[4] == pytest.approx(0.0, abs=1e-12)  # dummy
    assert phi[1] == pytest.approx(phi[2], abs=1e-12)  # symmetry
    other = rng.normal(size=1 << n)  # linearity
    assert np.allclose(shapley_values(table_game(values + 2 * other), n, max_exact_players=n).values,
                       phi + 2 * exact_shapley_from_value_table(other), atol=1e-12)


def test_sampled_shapley_values_keep_efficiency_and_converge_to_the_exact_ones():
    n = 7
    values = np.random.default_rng(1).normal(size=1 << n) + np.arange(1 << n) % 5  # not additive
    exact = shapley_values(table_game(values), n, max_exact_players=n)
    assert exact.exact and exact.num_evaluations == 1 << n and not exact.stderr.any()
    errors = []
    for permutations in (10, 100, 1000, 10000):
        sampled = shapley_values(table_game(values), n, max_exact_players=0, num_permutations=permutations, seed=3)
        assert not sampled.exact and sampled.num_evaluations <= 1 << n
        assert sampled.values.sum() == pytest.approx(values[-1] - values[0], abs=1e-9)  # every ordering sums to it
        assert np.all(np.abs(sampled.values - exact.values) <= 5 * sampled.stderr + 1e-12)
        errors.append(np.abs(sampled.values - exact.values).max())
    assert errors[-1] < errors[0] / 10  # error ~ 1 / sqrt(orderings)
    again = shapley_values(table_game(values), n, max_exact_players=0, num_permutations=100, seed=3)
    assert np.array_equal(again.values, shapley_values(table_game(values), n, max_exact_players=0,
                                                       num_permutations=100, seed=3).values)  # seeded


def test_the_value_function_is_called_once_with_distinct_coalitions():
    calls = []

    def value_of(coalitions):
        calls.append(coalitions.copy())
        return coalitions.sum(axis=1).astype(float)

    estimate = shapley_values(value_of, 12, max_exact_players=8, num_permutations=8, seed=0)
    assert len(calls) == 1 and len({row.tobytes() for row in calls[0]}) == len(calls[0]) == estimate.num_evaluations
    assert np.allclose(estimate.values, 1.0)  # an additive game: every ordering gives each player 1
    with pytest.raises(ValueError, match="at least one player"):
        shapley_values(value_of, 0)
