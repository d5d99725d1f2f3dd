"""Slow, independent references for the pairwise Shapley interaction of L_SSI (g2l/ops/shapley.py,
docs/method.md section 3): exact enumeration of every coalition, the Shapley axioms on general games
given by a value table, and the plain Monte Carlo estimator (independent draws of the coalition for
every pair, the former ``loss.ssi_estimator: plain``) twice: as the Numba kernel that g2l shipped as
``pairwise_interaction_batch(..., method="plain")`` until it kept only the stratified estimator
(:func:`plain_pairwise_interaction_batch`), and in plain Python drawing the same coalitions
(:func:`reference_pairwise_interaction_python`). The tests compare the stratified estimator with
both: it must match the exact values, and beat plain draws at equal samples. Test code only: nothing
in g2l or bench imports it (bench/shapley_accuracy.py loads the plain estimator from git).

The game: players are ``s`` sentences (``0 .. s-1``) and ``m`` moments (``s .. s+m-1``);
``v(C) = 0.5 * (mean over moments of the max over sentences of A + mean over sentences of the max
over moments of A)`` with ``A`` the per-sentence softmax of ``sim / tau`` over the present moments,
0 when either side is empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from numba import njit, prange

from g2l.ops.splitmix import MASK64, next_below, stream_start
from g2l.ops.threads import kernel_threads

__all__ = [
    "coalition_value",
    "game_value_table",
    "exact_interaction_from_value_table",
    "exact_pairwise_interaction",
    "reference_pairwise_interaction_python",
    "plain_pairwise_interaction",
    "plain_pairwise_interaction_batch",
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
    """The plain Monte Carlo estimator (:func:`plain_pairwise_interaction`) in plain Python.

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


# ---------------------------------------------------------------------------------------------
# The plain estimator in Numba (g2l's ``method="plain"`` until it left the library)
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _sample_pair(weights, num_sentences, j, i, num_samples, state, out_stats):
    """Monte Carlo bracket average for sentence j and moment i of one game.

    ``weights (s m)`` = exp((sim - row max) / tau), so that ``A = weights / row sum`` over the
    present moments. Writes ``out_stats = (mean, standard error)``.
    """
    s_all, m_all = weights.shape
    n = s_all + m_all
    others = np.empty(n - 2, dtype=np.int64)  # players other than j and i (moment i = player s+i)
    fill = 0
    for player in range(n):
        if player != j and player != num_sentences + i:
            others[fill] = player
            fill += 1
    sentences = np.empty(s_all + 1, dtype=np.int64)  # present sentences, then j
    moments = np.empty(m_all, dtype=np.int64)
    inv0 = np.empty(s_all + 1, dtype=np.float64)  # 1 / softmax sum over Mc
    inv1 = np.empty(s_all + 1, dtype=np.float64)  # 1 / softmax sum over Mc u {i}
    row0 = np.empty(s_all + 1, dtype=np.float64)  # max over Mc of A
    row1 = np.empty(s_all + 1, dtype=np.float64)  # max over Mc u {i} of A
    mean = 0.0
    m2 = 0.0
    for t in range(num_samples):
        # C: size uniform on 0..n-2, then a uniform subset of that size (partial Fisher-Yates).
        state, size = next_below(state, n - 1)
        for pos in range(size):
            state, r = next_below(state, n - 2 - pos)
            r += pos
            tmp = others[pos]
            others[pos] = others[r]
            others[r] = tmp
        ns = 0
        nm = 0
        for pos in range(size):
            player = others[pos]
            if player < num_sentences:
                sentences[ns] = player
                ns += 1
            else:
                moments[nm] = player - num_sentences
                nm += 1
        sentences[ns] = j
        # Per sentence (the present ones, then j): softmax sums and row maxima.
        sum_row0 = 0.0
        sum_row1 = 0.0
        for a in range(ns + 1):
            s = sentences[a]
            total = 0.0
            largest = 0.0
            for b in range(nm):
                w = weights[s, moments[b]]
                total += w
                if w > largest:
                    largest = w
            w_i = weights[s, i]
            if nm > 0:
                inv0[a] = 1.0 / total
                row0[a] = largest * inv0[a]
            else:
                inv0[a] = 0.0
                row0[a] = 0.0
            inv1[a] = 1.0 / (total + w_i)
            row1[a] = max(largest, w_i) * inv1[a]
            if a < ns:
                sum_row0 += row0[a]
                sum_row1 += row1[a]
        # Per moment: max over present sentences of A, without and with j, without and with i.
        col = 0.0  # C
        col_i = 0.0  # C u {i}, the moments of Mc
        col_j = 0.0  # C u {j}
        col_ij = 0.0  # C u {i, j}, the moments of Mc
        for b in range(nm):
            m = moments[b]
            best0 = 0.0
            best1 = 0.0
            for a in range(ns):
                w = weights[sentences[a], m]
                best0 = max(best0, w * inv0[a])
                best1 = max(best1, w * inv1[a])
            w_j = weights[j, m]
            col += best0
            col_i += best1
            col_j += max(best0, w_j * inv0[ns])
            col_ij += max(best1, w_j * inv1[ns])
        best_i = 0.0  # column of moment i
        for a in range(ns):
            best_i = max(best_i, weights[sentences[a], i] * inv1[a])
        best_ij = max(best_i, weights[j, i] * inv1[ns])
        v = 0.5 * (col / nm + sum_row0 / ns) if ns > 0 and nm > 0 else 0.0
        v_i = 0.5 * ((col_i + best_i) / (nm + 1) + sum_row1 / ns) if ns > 0 else 0.0
        v_j = 0.5 * (col_j / nm + (sum_row0 + row0[ns]) / (ns + 1)) if nm > 0 else 0.0
        v_ij = 0.5 * ((col_ij + best_ij) / (nm + 1) + (sum_row1 + row1[ns]) / (ns + 1))
        bracket = v_ij - v_i - v_j + v
        # Welford running mean and sum of squared deviations.
        delta = bracket - mean
        mean += delta / (t + 1)
        m2 += delta * (bracket - mean)
    out_stats[0] = mean
    out_stats[1] = math.sqrt(m2 / (num_samples - 1) / num_samples) if num_samples > 1 else np.inf


@njit(cache=True, parallel=True)
def _plain_game(weights, game, num_samples, seed, out_stats):
    """Every pair of one game, ``out_stats (s*m 2)`` row ``j * m + i`` = (mean, standard error); each
    pair has its own random stream keyed by (seed, game, j, i), so results do not depend on threads."""
    num_sentences, num_moments = weights.shape
    for q in prange(num_sentences * num_moments):
        j, i = q // num_moments, q % num_moments
        _sample_pair(weights, num_sentences, j, i, num_samples, stream_start(seed, game, j, i), out_stats[q])


def plain_pairwise_interaction_batch(sims: Sequence, num_samples: int, seed: int = 0, tau: float = 0.1,
                                     return_stderr: bool = False, return_mean_stderr: bool = False):
    """The plain estimator on several games: independent draws of C for every pair (j, i) of game
    g from the stream (seed, g, j, i). Returns as ``g2l.ops.shapley.pairwise_interaction_batch``
    (numpy in, numpy out); the row means' standard errors are those of independent pairs,
    ``sqrt(sum_i se_ji^2) / m``."""
    means, errors, mean_errors = [], [], []
    for game, sim in enumerate(sims):
        sim = _as_sim(sim)
        stats = np.zeros((sim.size, 2))
        if sim.size:
            logits = sim / tau
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))  # (s m), as g2l.ops.shapley's
            with kernel_threads():
                _plain_game(weights, game, int(num_samples), np.uint64(int(seed) & MASK64), stats)
        err = stats[:, 1].reshape(sim.shape)
        means.append(stats[:, 0].reshape(sim.shape))
        errors.append(err)
        mean_errors.append(np.sqrt((err**2).sum(axis=1)) / max(sim.shape[1], 1))
    if return_mean_stderr:
        return means, errors, mean_errors
    return (means, errors) if return_stderr else means


def plain_pairwise_interaction(sim, num_samples: int, seed: int = 0, tau: float = 0.1, return_stderr: bool = False):
    """The plain estimator on one game (game index 0): ``I (s m)`` (and its standard error)."""
    out = plain_pairwise_interaction_batch([sim], num_samples, seed, tau, return_stderr)
    return (out[0][0], out[1][0]) if return_stderr else out[0]
