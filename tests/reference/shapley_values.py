"""The sampler of word Shapley values that ``g2l.ops.shapley_values.shapley_values`` replaced: the
same antithetic orderings, coalitions as 64-bit masks instead of boolean rows (at most 62 players).
tests/test_explain.py checks that today's sampler gives the same values and evaluation count.
Test code only: nothing in g2l or bench imports it.
"""

from __future__ import annotations

import math

import numpy as np


def mask_permutation_shapley(value_of, num_players: int, *, num_permutations: int, seed: int):
    """``(values, stderr, num_evaluations, v(all), v(none))`` by the same orderings as
    ``g2l.ops.shapley_values.shapley_values``'s sampled path, with coalitions as 64-bit masks (at
    most 62 players): the implementation the package had before it sampled boolean rows."""
    n = int(num_players)
    assert n <= 62
    full = (1 << n) - 1
    rng = np.random.default_rng(seed)
    half = (num_permutations + 1) // 2
    orders = np.stack([rng.permutation(n) for _ in range(half)])
    orders = np.concatenate([orders, orders[:, ::-1]])
    prefixes = np.zeros((orders.shape[0], n + 1), dtype=np.int64)
    prefixes[:, 1:] = np.cumsum(np.left_shift(np.int64(1), orders), axis=1)
    unique, where = np.unique(prefixes, return_inverse=True)
    coalitions = ((unique[:, None] >> np.arange(n)) & 1).astype(bool)
    values = np.asarray(value_of(coalitions), dtype=np.float64).reshape(-1)
    along = values[where.reshape(prefixes.shape)]
    marginal = np.empty(orders.shape)
    np.put_along_axis(marginal, orders, np.diff(along, axis=1), axis=1)
    pair_means = 0.5 * (marginal[:half] + marginal[half:])
    stderr = pair_means.std(axis=0, ddof=1) / math.sqrt(half) if half > 1 else np.full(n, np.inf)
    return (pair_means.mean(axis=0), stderr, int(unique.size), float(values[np.searchsorted(unique, full)]),
            float(values[np.searchsorted(unique, 0)]))
