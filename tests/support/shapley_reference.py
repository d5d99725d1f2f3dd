"""Slow, independent references for the pairwise Shapley interaction of L_SSI (g2l/ops/shapley.py):
exact enumeration of every coalition, the Shapley axioms on general games given by a value table,
and the plain Monte Carlo estimator in plain Python drawing the same coalitions as the Numba
kernel. Used by the tests and the benchmarks only; nothing in g2l imports it.

The game (docs/method.md section 3): players are ``s`` sentences (``0 .. s-1``) and ``m`` moments
(``s .. s+m-1``); ``v(C) = 0.5 * (mean over moments of the max over sentences of A + mean over
sentences of the max over moments of A)`` with ``A`` the per-sentence softmax of ``sim / tau``
over the present moments, 0 when either side is empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "coalition_value",
    "game_value_table",
    "exact_interaction_from_value_table",
    "exact_pairwise_interaction",
    "reference_pairwise_interaction_python",
]

MAX_EXACT_PLAYERS = 20
# SplitMix64, the counter-based generator of g2l/ops/shapley.py, re-implemented on Python integers.
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_TO_UNIT = 2.0**-53


def _as_sim(sim) -> np.ndarray:
    if isinstance(sim, torch.Tensor):
        sim = sim.detach().cpu().double().numpy()
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"Shapley interaction: sim must be a (sentences, moments) matrix, got shape {sim.shape}.")
    return sim


def _py_mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def _py_stream_start(seed: int, game: int, j: int, i: int) -> int:
    state = _py_mix64((seed + _GOLDEN) & _MASK64)
    state = _py_mix64(state ^ _py_mix64((game + _GOLDEN) & _MASK64))
    state = _py_mix64(state ^ _py_mix64((j + _MIX1) & _MASK64))
    return _py_mix64(state ^ _py_mix64((i + _MIX2) & _MASK64))


def _py_next_below(state: int, bound: int) -> tuple[int, int]:
    state = (state + _GOLDEN) & _MASK64
    unit = float(_py_mix64(state) >> 11) * _TO_UNIT
    return state, int(unit * bound)


def coalition_value(sim, tau: float, sentence_idx: Sequence[int], moment_idx: Sequence[int]) -> float:
    """``v(C)`` straight from the definition, for the present sentences and moments."""
    sim = np.asarray(sim, dtype=np.float64)
    if len(sentence_idx) == 0 or len(moment_idx) == 0:
        return 0.0
    logits = sim[np.ix_(list(sentence_idx), list(moment_idx))] / tau  # (|Sc| |Mc|)
    logits = logits - logits.max(axis=1, keepdims=True)
    align = np.exp(logits)
    align /= align.sum(axis=1, keepdims=True)
    return float(0.5 * (align.max(axis=0).mean() + align.max(axis=1).mean()))


def game_value_table(sim, tau: float = 0.1) -> np.ndarray:
    """``(2^n,)`` values of every coalition; bit p of the index is player p (sentences first)."""
    sim = _as_sim(sim)
    num_sentences, num_moments = sim.shape
    n = num_sentences + num_moments
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"Shapley interaction: exact enumeration of {n} players is too large "
            f"(max {MAX_EXACT_PLAYERS}); use pairwise_interaction (Monte Carlo)."
        )
    values = np.zeros(1 << n)
    for mask in range(1 << n):
        sentences = [s for s in range(num_sentences) if mask >> s & 1]
        moments = [m for m in range(num_moments) if mask >> (num_sentences + m) & 1]
        values[mask] = coalition_value(sim, tau, sentences, moments)
    return values


def exact_interaction_from_value_table(values: np.ndarray) -> np.ndarray:
    """Pairwise Shapley interaction index of every pair of players of a general game.

    Args:
        values: ``(2^n,)`` coalition values, bit p of the index = player p.
    Returns:
        ``(n n)`` symmetric matrix ``I[a, b]`` (zero diagonal).
    """
    values = np.asarray(values, dtype=np.float64)
    n = int(round(math.log2(values.size)))
    if values.ndim != 1 or values.size != 1 << n or n < 2:
        raise ValueError(
            f"Shapley interaction: a value table must have 2^n entries with n >= 2, got {values.shape}."
        )
    masks = np.arange(1 << n)
    sizes = np.zeros(1 << n, dtype=np.int64)
    for p in range(n):
        sizes += (masks >> p) & 1
    weight_by_size = np.array(
        [math.factorial(c) * math.factorial(n - c - 2) / math.factorial(n - 1) for c in range(n - 1)]
    )
    out = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            bit_a, bit_b = 1 << a, 1 << b
            rest = masks[(masks & (bit_a | bit_b)) == 0]
            bracket = values[rest | bit_a | bit_b] - values[rest | bit_a] - values[rest | bit_b] + values[rest]
            out[a, b] = out[b, a] = (weight_by_size[sizes[rest]] * bracket).sum()
    return out


def exact_pairwise_interaction(sim, tau: float = 0.1) -> np.ndarray:
    """Exact ``I (s m)`` by enumerating all ``2^(s+m)`` coalitions (n up to ~16 in practice)."""
    sim_np = _as_sim(sim)
    num_sentences = sim_np.shape[0]
    if sim_np.size == 0:
        return np.zeros(sim_np.shape)
    table = exact_interaction_from_value_table(game_value_table(sim_np, tau))
    return table[:num_sentences, num_sentences:]


def _python_value(sim_rows: list, tau: float, sentences: list, moments: list) -> float:
    if not sentences or not moments:
        return 0.0
    align = []
    for s in sentences:
        logits = [sim_rows[s][m] / tau for m in moments]
        top = max(logits)
        exps = [math.exp(z - top) for z in logits]
        total = sum(exps)
        align.append([e / total for e in exps])
    col_mean = sum(max(row[b] for row in align) for b in range(len(moments))) / len(moments)
    row_mean = sum(max(row) for row in align) / len(sentences)
    return 0.5 * (col_mean + row_mean)


def reference_pairwise_interaction_python(sim, num_samples: int, seed: int = 0, tau: float = 0.1,
                                           return_stderr: bool = False, game: int = 0):
    """The Monte Carlo estimator of :func:`pairwise_interaction` in plain Python.

    Draws the same coalitions as the Numba kernel (same SplitMix64 streams, same partial
    Fisher-Yates), but evaluates every value from scratch with the textbook softmax; the two
    agree to float64 round-off. Slow: for tests and the benchmark only.
    """
    sim_rows = _as_sim(sim).tolist()
    num_sentences = len(sim_rows)
    num_moments = len(sim_rows[0]) if sim_rows else 0
    n = num_sentences + num_moments
    mean_out = [[0.0] * num_moments for _ in range(num_sentences)]
    err_out = [[0.0] * num_moments for _ in range(num_sentences)]
    for j in range(num_sentences):
        for i in range(num_moments):
            state = _py_stream_start(int(seed) & _MASK64, game, j, i)
            others = [p for p in range(n) if p != j and p != num_sentences + i]
            brackets = []
            for _ in range(num_samples):
                state, size = _py_next_below(state, n - 1)
                for pos in range(size):
                    state, r = _py_next_below(state, n - 2 - pos)
                    others[pos], others[pos + r] = others[pos + r], others[pos]
                sentences = [p for p in others[:size] if p < num_sentences]
                moments = [p - num_sentences for p in others[:size] if p >= num_sentences]
                bracket = (_python_value(sim_rows, tau, sentences + [j], moments + [i])
                           - _python_value(sim_rows, tau, sentences, moments + [i])
                           - _python_value(sim_rows, tau, sentences + [j], moments)
                           + _python_value(sim_rows, tau, sentences, moments))
                brackets.append(bracket)
            mean = sum(brackets) / num_samples
            mean_out[j][i] = mean
            if num_samples > 1:
                var = sum((b - mean) ** 2 for b in brackets) / (num_samples - 1)
                err_out[j][i] = math.sqrt(var / num_samples)
            else:
                err_out[j][i] = math.inf
    mean_np = np.array(mean_out).reshape(num_sentences, num_moments)
    err_np = np.array(err_out).reshape(num_sentences, num_moments)
    return (mean_np, err_np) if return_stderr else mean_np


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
