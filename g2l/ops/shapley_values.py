"""Shapley values of a general game given by a batched value function (the word explanation of a
grounding, ``g2l.explain``)::

    phi_i = sum_{S subset N \\ {i}}  |S|! (n - |S| - 1)! / n!  * [ v(S u {i}) - v(S) ]
          = E_pi [ v(P_i(pi) u {i}) - v(P_i(pi)) ],   P_i(pi) = the players before i in ordering pi.

The cost of a game here is its value function (a batch of text-encoder passes), not the
arithmetic, so this is plain numpy: coalitions are gathered, de-duplicated and evaluated in one
call, and no Numba kernel would help. (The pairwise interactions of L_SSI are in
:mod:`g2l.ops.shapley`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["ShapleyEstimate", "shapley_values", "exact_shapley_from_value_table"]


@dataclass
class ShapleyEstimate:
    values: np.ndarray  # (n,) phi_i
    stderr: np.ndarray  # (n,) standard error of each value; 0 when exact
    exact: bool  # enumerated every coalition (True) or sampled orderings (False)
    num_evaluations: int  # distinct coalitions whose value was computed
    value_all: float  # v(N)
    value_none: float  # v(empty)


def _masks_to_bool(masks: np.ndarray, n: int) -> np.ndarray:
    """Bitmasks ``(k,)`` (bit p = player p) -> ``(k n)`` booleans."""
    return ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def exact_shapley_from_value_table(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values ``(n,)`` of a game given by its value table ``(2^n,)`` indexed by bitmask."""
    values = np.asarray(values, dtype=np.float64)
    n = int(round(math.log2(values.size))) if values.size else -1
    if values.ndim != 1 or n < 1 or values.size != 1 << n:
        raise ValueError(f"Shapley values: a value table must have 2^n entries with n >= 1, got {values.shape}.")
    masks = np.arange(1 << n, dtype=np.int64)
    sizes = _masks_to_bool(masks, n).sum(axis=1)
    weight_by_size = np.array([math.factorial(c) * math.factorial(n - c - 1) / math.factorial(n) for c in range(n)])
    out = np.zeros(n)
    for i in range(n):
        rest = masks[(masks >> i) & 1 == 0]  # the coalitions without i
        out[i] = (weight_by_size[sizes[rest]] * (values[rest | (1 << i)] - values[rest])).sum()
    return out


def shapley_values(value_of: Callable[[np.ndarray], np.ndarray], num_players: int, *, max_exact_players: int = 8,
                   num_permutations: int = 16, seed: int = 0) -> ShapleyEstimate:
    """The Shapley value of each of ``num_players`` players of the game ``value_of``.

    ``value_of(coalitions (k n) bool) -> (k,)`` values; it is called once, with distinct
    coalitions. Up to ``max_exact_players`` players every one of the 2^n coalitions is evaluated
    and the values are exact. Beyond, ``num_permutations`` orderings are drawn (seeded; in
    antithetic pairs, an ordering and its reverse, which lowers the variance) and each value is the
    mean of the player's marginal contributions along them; every ordering's contributions sum to
    ``v(N) - v(empty)``, so the estimate keeps the efficiency axiom exactly.
    """
    n = int(num_players)
    if n < 1:
        raise ValueError(f"Shapley values need at least one player, got {num_players}.")
    if num_permutations < 2:
        raise ValueError(f"Shapley values: num_permutations must be at least 2, got {num_permutations}.")
    if n <= max_exact_players:
        full = (1 << n) - 1
        masks = np.arange(1 << n, dtype=np.int64)
        table = np.asarray(value_of(_masks_to_bool(masks, n)), dtype=np.float64).reshape(-1)
        return ShapleyEstimate(exact_shapley_from_value_table(table), np.zeros(n), True, int(masks.size),
                               float(table[full]), float(table[0]))
    rng = np.random.default_rng(seed)
    half = (num_permutations + 1) // 2
    orders = np.stack([rng.permutation(n) for _ in range(half)])  # (h n)
    orders = np.concatenate([orders, orders[:, ::-1]])  # (2h n): antithetic pairs
    rank = np.argsort(orders, axis=1)  # rank[r, p]: where player p stands in ordering r
    prefixes = rank[:, None, :] < np.arange(n + 1)[None, :, None]  # (2h n+1 n): the first k players, any n
    unique, where = np.unique(prefixes.reshape(-1, n), axis=0, return_inverse=True)
    values = np.asarray(value_of(unique), dtype=np.float64).reshape(-1)
    along = values[where.reshape(-1)].reshape(orders.shape[0], n + 1)  # (2h n+1)
    marginal = np.empty(orders.shape)  # (2h n): marginal[r, p] of player p in ordering r
    np.put_along_axis(marginal, orders, np.diff(along, axis=1), axis=1)
    # Antithetic pairs are averaged first: the pair means are independent draws.
    pair_means = 0.5 * (marginal[:half] + marginal[half:])  # (h n)
    stderr = pair_means.std(axis=0, ddof=1) / math.sqrt(half) if half > 1 else np.full(n, np.inf)
    return ShapleyEstimate(pair_means.mean(axis=0), stderr, False, int(unique.shape[0]), float(along[0, -1]),
                           float(along[0, 0]))
