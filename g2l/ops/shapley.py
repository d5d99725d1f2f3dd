"""Pairwise Shapley interaction of sentences and moments (docs/method.md section 3, "L_SSI").

The game of one video: players are its ``s`` sentences (players ``0 .. s-1``) and ``m`` moment
cells (players ``s .. s+m-1``), ``n = s + m``. Input is the precomputed sentence-by-moment cosine
similarity ``sim (s m)`` (no gradient). For a coalition C with present sentences ``Sc`` and
moments ``Mc``: ``v(C) = 0`` if either is empty, else, with

    A = softmax over the moments in Mc of sim[Sc][:, Mc] / tau         (one softmax per sentence)
    v(C) = 0.5 * ( mean_{m in Mc} max_{s in Sc} A[s, m]  +  mean_{s in Sc} max_{m in Mc} A[s, m] ).

Absent players are dropped from the computation (never masked with a large negative number).
The pairwise Shapley interaction index of sentence j and moment i (textbook sign) is

    I[j, i] = sum_{C subset N \\ {i, j}}  |C|! (n - |C| - 2)! / (n - 1)!
              * [ v(C u {i, j}) - v(C u {i}) - v(C u {j}) + v(C) ].

The weight is the probability of C being the set of units before the merged unit {i, j} in a
uniformly random ordering of the n - 1 units; equivalently, ``|C|`` is uniform on ``0 .. n-2``
and C is uniform among the subsets of that size of the other n - 2 players. (The players before
the first of i, j in a random ordering of all n players do NOT follow this law.)

* :func:`exact_pairwise_interaction` enumerates every coalition (small games, n up to ~16).
* :func:`pairwise_interaction` / :func:`pairwise_interaction_batch`: the unbiased Monte Carlo
  estimate, averaging the bracket over ``num_samples`` draws of C per pair, in a Numba kernel
  (parallel over pairs). The four values of a draw share their softmax sums, so one draw costs
  ``O(|Sc| |Mc|)`` multiply-adds. Random draws come from a counter-based generator (SplitMix64)
  keyed by ``(seed, game, j, i)``: the same seed gives the same output whatever the thread count.
* :func:`_reference_pairwise_interaction_python`: the same estimator in plain Python, drawing
  the same coalitions; used by the tests (agreement to round-off) and by the benchmark.
* Helpers on arbitrary games given by a value table indexed by bitmask (bit ``p`` = player p),
  for testing the Shapley axioms: :func:`game_value_table`, :func:`exact_interaction_from_value_table`.

Shapes use the axis glossary of :mod:`g2l`; here ``s`` sentences and ``m`` moment players of one
video (``m = 2 K s`` before de-duplication).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from numba import njit, prange

from g2l.ops.threads import kernel_threads

__all__ = [
    "pairwise_interaction",
    "pairwise_interaction_batch",
    "exact_pairwise_interaction",
    "coalition_value",
    "game_value_table",
    "exact_interaction_from_value_table",
]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_TO_UNIT = 2.0**-53
_GOLDEN_U64, _MIX1_U64, _MIX2_U64 = np.uint64(_GOLDEN), np.uint64(_MIX1), np.uint64(_MIX2)
_SHIFTS_U64 = (np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11))
_MAX_EXACT_PLAYERS = 20
_MAX_LOGIT_RANGE = 700.0  # exp(-700) is still a normal float64


# ---------------------------------------------------------------------------------------------
# Counter-based random numbers (SplitMix64), identical in Numba and in plain Python
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _mix64(z):
    z = (z ^ (z >> _SHIFTS_U64[0])) * _MIX1_U64
    z = (z ^ (z >> _SHIFTS_U64[1])) * _MIX2_U64
    return z ^ (z >> _SHIFTS_U64[2])


@njit(cache=True)
def _stream_start(seed, game, j, i):
    """Initial state of the stream of pair (j, i) of game ``game``."""
    state = _mix64(seed + _GOLDEN_U64)
    state = _mix64(state ^ _mix64(np.uint64(game) + _GOLDEN_U64))
    state = _mix64(state ^ _mix64(np.uint64(j) + _MIX1_U64))
    return _mix64(state ^ _mix64(np.uint64(i) + _MIX2_U64))


@njit(cache=True)
def _next_below(state, bound):
    """Advance the SplitMix64 state; return ``(new_state, integer uniform on 0 .. bound-1)``."""
    state = state + _GOLDEN_U64
    unit = np.float64(_mix64(state) >> _SHIFTS_U64[3]) * _TO_UNIT  # in [0, 1), 53 bits
    return state, np.int64(unit * bound)


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


# ---------------------------------------------------------------------------------------------
# Monte Carlo kernel
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
        state, size = _next_below(state, n - 1)
        for pos in range(size):
            state, r = _next_below(state, n - 2 - pos)
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
def _interaction_kernel(weights_flat, weight_offsets, num_sentences, num_moments, pair_game,
                        pair_j, pair_i, num_samples, seed, out_stats):
    """All pairs of all games; ``out_stats (pairs 2)`` = (mean, standard error). One pair per
    task; each pair has its own random stream, so results do not depend on scheduling."""
    for q in prange(pair_game.shape[0]):
        g = pair_game[q]
        s_g = num_sentences[g]
        m_g = num_moments[g]
        weights = weights_flat[weight_offsets[g] : weight_offsets[g] + s_g * m_g].reshape((s_g, m_g))
        state = _stream_start(seed, g, pair_j[q], pair_i[q])
        _sample_pair(weights, s_g, pair_j[q], pair_i[q], num_samples, state, out_stats[q])


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _as_sim(sim, name: str = "sim") -> np.ndarray:
    if isinstance(sim, torch.Tensor):
        sim = sim.detach().cpu().double().numpy()
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(
            f"Shapley interaction: {name} must be a (sentences, moments) matrix, got shape {sim.shape}."
        )
    if not np.isfinite(sim).all():
        raise ValueError(f"Shapley interaction: {name} contains NaN or infinite values.")
    return sim


def _softmax_weights(sim: np.ndarray, tau: float) -> np.ndarray:
    """``exp((sim - row max) / tau)``, checked not to underflow to zero."""
    if not tau > 0:
        raise ValueError(f"Shapley interaction: tau must be > 0, got {tau!r}.")
    if sim.size == 0:
        return sim.copy()
    logits = sim / tau
    spread = (logits.max(axis=1) - logits.min(axis=1)).max()
    if spread > _MAX_LOGIT_RANGE:
        raise ValueError(
            f"Shapley interaction: (max - min) similarity / tau = {spread:.0f} per sentence is too "
            f"large for float64 softmax weights (limit {_MAX_LOGIT_RANGE:.0f}); raise tau."
        )
    return np.exp(logits - logits.max(axis=1, keepdims=True))


def pairwise_interaction_batch(sims: Sequence, num_samples: int, seed: int = 0, tau: float = 0.1,
                               return_stderr: bool = False):
    """Monte Carlo pairwise interactions for several games (videos) in one Numba call.

    Args:
        sims: one ``(s_v m_v)`` similarity matrix per video (numpy or torch; no gradient).
        num_samples: coalitions drawn per (sentence, moment) pair.
        seed: any integer; the draws of pair (j, i) of game g depend only on (seed, g, j, i).
        tau: softmax temperature.
        return_stderr: also return the standard errors of the estimates.
    Returns:
        a list of ``(s_v m_v)`` arrays ``I[j, i]`` (and a list of standard errors): float64 numpy
        for numpy input, float32 torch on the input's device for tensor input.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(
            f"Shapley interaction: num_samples must be a positive integer, got {num_samples!r}."
        )
    mats = [_as_sim(sim, f"sims[{g}]") for g, sim in enumerate(sims)]
    weights = [_softmax_weights(sim, tau) for sim in mats]
    num_sentences = np.array([w.shape[0] for w in weights], dtype=np.int64)
    num_moments = np.array([w.shape[1] for w in weights], dtype=np.int64)
    sizes = num_sentences * num_moments
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    weights_flat = np.concatenate([w.ravel() for w in weights] + [np.zeros(0)])
    pair_game = np.repeat(np.arange(len(mats), dtype=np.int64), sizes)
    shapes = list(zip(num_sentences, num_moments))
    pair_j = np.concatenate([np.repeat(np.arange(s), m) for s, m in shapes] + [np.zeros(0)])  # (pairs,)
    pair_i = np.concatenate([np.tile(np.arange(m), s) for s, m in shapes] + [np.zeros(0)])  # (pairs,)
    stats = np.zeros((pair_game.size, 2), dtype=np.float64)
    if pair_game.size:
        with kernel_threads():
            _interaction_kernel(weights_flat, offsets, num_sentences, num_moments, pair_game,
                                pair_j.astype(np.int64), pair_i.astype(np.int64), int(num_samples),
                                np.uint64(int(seed) & _MASK64), stats)
    means, errors = [], []
    for g, sim in enumerate(sims):
        block = stats[offsets[g] : offsets[g + 1]].reshape(num_sentences[g], num_moments[g], 2)
        mean, err = block[..., 0].copy(), block[..., 1].copy()
        if isinstance(sim, torch.Tensor):
            mean = torch.from_numpy(mean).float().to(sim.device)
            err = torch.from_numpy(err).float().to(sim.device)
        means.append(mean)
        errors.append(err)
    return (means, errors) if return_stderr else means


def pairwise_interaction(sim, num_samples: int, seed: int = 0, tau: float = 0.1,
                         return_stderr: bool = False):
    """Monte Carlo pairwise Shapley interaction of every sentence j and moment i of one video.

    Args:
        sim: ``(s m)`` sentence-by-moment cosine similarity (numpy or torch; no gradient).
        num_samples, seed, tau, return_stderr: as in :func:`pairwise_interaction_batch`
            (this is a batch of one game, game index 0).
    Returns:
        ``I (s m)`` (and its standard error ``(s m)``); unbiased, error ~ 1 / sqrt(num_samples).
    """
    out = pairwise_interaction_batch([sim], num_samples, seed, tau, return_stderr)
    return (out[0][0], out[1][0]) if return_stderr else out[0]


# ---------------------------------------------------------------------------------------------
# Exact enumeration and general games (small n; tests)
# ---------------------------------------------------------------------------------------------


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
    if n > _MAX_EXACT_PLAYERS:
        raise ValueError(
            f"Shapley interaction: exact enumeration of {n} players is too large "
            f"(max {_MAX_EXACT_PLAYERS}); use pairwise_interaction (Monte Carlo)."
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


# ---------------------------------------------------------------------------------------------
# Plain-Python reference of the Monte Carlo estimator (tests and benchmark only)
# ---------------------------------------------------------------------------------------------


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


def _reference_pairwise_interaction_python(sim, num_samples: int, seed: int = 0, tau: float = 0.1,
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
