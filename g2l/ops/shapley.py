"""Pairwise Shapley interactions of the sentences and moments of a video, for L_SSI
(docs/method.md section 3). (The Shapley values of the word explanation are in
:mod:`g2l.ops.shapley_values`.)

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

* :func:`pairwise_interaction` / :func:`pairwise_interaction_batch`: unbiased Monte Carlo
  estimates with standard errors, in a Numba kernel parallel over sentences. The four values of a
  bracket share their softmax sums, so a bracket costs ``O(|Sc| |Mc|)`` multiply-adds. Random draws
  come from a counter-based generator (SplitMix64) keyed by ``(seed, game, j)``: the same seed
  gives the same output whatever the thread count.
* The estimator is stratified: strata over how MANY other sentences and moments C holds
  (:mod:`g2l.ops.shapley_plan`, exact law, ``s * m`` cells, bins of counts), the players drawn
  within a stratum; a draw of the other sentences and of a moment ordering serves every moment of
  sentence j at once; Neyman-like allocation (fewer draws for large, low-spread, costly
  coalitions). Cost ``O(s * num_samples * m * E[|Sc| |Mc|])``, memory ``O(s m)`` per game:
  polynomial in s (the former strata over WHICH sentences were ``2^(s-1)``).

Exact enumeration and the plain estimator (independent draws of C per pair, the baseline the
stratified one beats), in Numba and in plain Python, are test references in
``tests/reference/shapley_interaction.py``.

Shapes use the axis glossary of :mod:`g2l`; here ``s`` sentences and ``m`` moment players of one
video (``m = 2 K s`` before de-duplication).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numba import njit, prange

from g2l.ops.shapley_plan import MAX_LOGIT_RANGE, StratifiedPlan, context_probabilities, stratified_plan
from g2l.ops.splitmix import MASK64, next_below, next_unit, stream_start
from g2l.ops.threads import kernel_threads

__all__ = [
    "pairwise_interaction",
    "pairwise_interaction_batch",
    "StratifiedPlan",
    "context_probabilities",
    "stratified_plan",
]



# ---------------------------------------------------------------------------------------------
# Stratified kernel: strata over (t, k) = how many other sentences and how many other moments C
# holds; each draw serves every pair of its sentence
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _row_stats(local, num_s, num_m, rowsum, rowmax, rowmax2):
    """Each sentence's softmax-weight sum, largest and second-largest weight over rows 0..num_m-1."""
    for a in range(num_s):
        rowsum[a] = 0.0
        rowmax[a] = 0.0
        rowmax2[a] = 0.0
    for b in range(num_m):
        for a in range(num_s):
            w = local[b, a]
            rowsum[a] += w
            if w > rowmax[a]:
                rowmax2[a] = rowmax[a]
                rowmax[a] = w
            elif w > rowmax2[a]:
                rowmax2[a] = w


@njit(cache=True, inline="always")
def _set_values(local, num_s, num_m, extra, remove, rowsum, rowmax, rowmax2, inv, out):
    """``out = (v(M', S), v(M', S u {j}))``.

    ``local (m+1 s)``: ``local[b, a]`` is the softmax weight of sentence a (j is the last, a =
    num_s - 1; S the others) and moment b of M = rows 0..num_m-1. M' is M plus the moment whose
    weights are ``extra (s,)`` when ``remove == -2``, M minus row ``remove`` when ``remove >= 0``,
    M itself when ``remove == -1``. ``rowsum``, ``rowmax``, ``rowmax2`` are each sentence's sum,
    largest and second-largest weight over M; ``inv`` is scratch."""
    use_extra = remove == -2
    size = num_m + (1 if use_extra else 0) - (1 if remove >= 0 else 0)
    if size <= 0:
        out[0] = 0.0
        out[1] = 0.0
        return
    jj = num_s - 1
    row_without = 0.0
    row_j = 0.0
    for a in range(num_s):
        if use_extra:
            total = rowsum[a] + extra[a]
            top = max(rowmax[a], extra[a])
        elif remove >= 0:
            w_out = local[remove, a]
            if w_out > 0.5 * rowsum[a]:  # subtracting would cancel: sum the rest directly
                total = 0.0
                for b in range(num_m):
                    if b != remove:
                        total += local[b, a]
            else:
                total = rowsum[a] - w_out
            top = rowmax2[a] if w_out >= rowmax[a] else rowmax[a]
        else:
            total = rowsum[a]
            top = rowmax[a]
        inv[a] = 1.0 / total
        if a < jj:
            row_without += top * inv[a]
        else:
            row_j = top * inv[a]
    col_without = 0.0
    col_with = 0.0
    for b in range(num_m + 1):
        if b < num_m:
            if b == remove:
                continue
            column = local[b]
        elif use_extra:
            column = extra
        else:
            break
        best = 0.0
        for a in range(jj):
            val = column[a] * inv[a]
            if val > best:
                best = val
        col_without += best
        col_with += max(best, column[jj] * inv[jj])
    out[0] = 0.5 * (col_without / size + row_without / jj) if jj > 0 else 0.0
    out[1] = 0.5 * (col_with / size + (row_without + row_j) / num_s)


@njit(cache=True)
def _stratified_sentence(weights, j, stratum_probability, stratum_draws, cell_offsets, cell_t, cell_k,
                         cell_cumulative, seed, game, out_mean, out_var, out_row_var):
    """Every interaction I[j, :] of sentence j of one game, by stratified sampling.

    Stratum h holds the cells (t, k) ``cell_offsets[h] .. cell_offsets[h+1]-1`` (t other sentences
    and k other moments in C), has probability ``stratum_probability[h]`` under the index's law and
    gets ``stratum_draws[h]`` draws; ``cell_cumulative`` is the running conditional probability of
    the cells within their stratum, from which a draw picks (t, k). Then T is a uniform t-subset of
    the other sentences, and a random ordering of the moments (prefix P_k) serves every moment i at
    once: C holds T and the k moments of P_k, or of P_{k+1} minus i when i is in P_k, a uniform
    k-subset of the moments other than i in both cases. Writes the stratified mean and its variance
    (from the spread of each stratum's draws) for every i, and ``out_row_var[0]``, the variance of
    the mean over i of the estimates (from the spread of each draw's mean bracket over the moments):
    a draw serves every moment, so their errors are correlated, and this is their common part."""
    s_all, m_all = weights.shape
    others = np.empty(max(s_all - 1, 1), dtype=np.int64)
    num_others = 0
    for a in range(s_all):
        if a != j:
            others[num_others] = a
            num_others += 1
    sentences = np.empty(s_all, dtype=np.int64)
    perm = np.arange(m_all)
    local = np.empty((m_all + 1, s_all))  # rows: P_{k+1} in order, then the extra moment i
    rowsum0 = np.empty(s_all)
    rowmax0 = np.empty(s_all)
    second0 = np.empty(s_all)
    rowsum1 = np.empty(s_all)
    rowmax1 = np.empty(s_all)
    second1 = np.empty(s_all)
    inv = np.empty(s_all)
    pair_sum = np.empty(m_all)
    pair_sq = np.empty(m_all)
    base0 = np.empty(2)
    base1 = np.empty(2)
    moved = np.empty(2)
    state = stream_start(seed, game, j, np.uint64(0))
    for i in range(m_all):
        out_mean[i] = 0.0
        out_var[i] = 0.0
    out_row_var[0] = 0.0
    for h in range(stratum_probability.shape[0]):
        w_stratum = stratum_probability[h]
        num_draws = stratum_draws[h]
        if w_stratum <= 0.0 or num_draws <= 0:
            continue
        for i in range(m_all):
            pair_sum[i] = 0.0
            pair_sq[i] = 0.0
        row_sq = 0.0  # sum over the draws of (mean bracket over the moments)^2
        for d in range(num_draws):
            state, unit = next_unit(state)
            lo = cell_offsets[h]
            hi = cell_offsets[h + 1] - 1
            while lo < hi:  # the first cell whose cumulative probability exceeds unit
                mid = (lo + hi) // 2
                if cell_cumulative[mid] > unit:
                    hi = mid
                else:
                    lo = mid + 1
            t = cell_t[lo]
            k = cell_k[lo]
            for pos in range(t):  # T: partial Fisher-Yates over the other sentences
                state, r = next_below(state, num_others - pos)
                r += pos
                tmp = others[pos]
                others[pos] = others[r]
                others[r] = tmp
                sentences[pos] = others[pos]
            sentences[t] = j
            num_s = t + 1
            prefix = min(k + 1, m_all)
            for pos in range(prefix):
                state, r = next_below(state, m_all - pos)
                r += pos
                tmp = perm[pos]
                perm[pos] = perm[r]
                perm[r] = tmp
                for a in range(num_s):
                    local[pos, a] = weights[sentences[a], perm[pos]]
            _row_stats(local, num_s, k, rowsum0, rowmax0, second0)
            _set_values(local, num_s, k, local[m_all], -1, rowsum0, rowmax0, second0, inv, base0)
            if k < m_all:
                # P_{k+1} = P_k plus perm[k]: extend P_k's row statistics.
                for a in range(num_s):
                    w = local[k, a]
                    rowsum1[a] = rowsum0[a] + w
                    if w > rowmax0[a]:
                        rowmax1[a] = w
                        second1[a] = rowmax0[a]
                    else:
                        rowmax1[a] = rowmax0[a]
                        second1[a] = max(second0[a], w)
                _set_values(local, num_s, k + 1, local[m_all], -1, rowsum1, rowmax1, second1, inv, base1)
            row_bracket = 0.0
            for pos in range(m_all):
                i = perm[pos]
                if pos < k:  # i in P_k: C's moments are P_{k+1} minus i
                    _set_values(local, num_s, k + 1, local[m_all], pos, rowsum1, rowmax1, second1, inv, moved)
                    bracket = base1[1] - base1[0] - moved[1] + moved[0]
                elif pos == k:  # C's moments are P_k, and P_k plus i is P_{k+1}
                    bracket = base1[1] - base1[0] - base0[1] + base0[0]
                else:
                    extra = local[m_all]
                    for a in range(num_s):
                        extra[a] = weights[sentences[a], i]
                    _set_values(local, num_s, k, extra, -2, rowsum0, rowmax0, second0, inv, moved)
                    bracket = moved[1] - moved[0] - base0[1] + base0[0]
                pair_sum[i] += bracket
                pair_sq[i] += bracket * bracket
                row_bracket += bracket
            row_bracket /= m_all
            row_sq += row_bracket * row_bracket
        row_total = 0.0
        for i in range(m_all):
            mean_i = pair_sum[i] / num_draws
            out_mean[i] += w_stratum * mean_i
            row_total += pair_sum[i]
            if num_draws > 1:
                var_i = max(pair_sq[i] - num_draws * mean_i * mean_i, 0.0) / (num_draws - 1)
                out_var[i] += w_stratum * w_stratum * var_i / num_draws
        if num_draws > 1:
            row_mean = row_total / (m_all * num_draws)
            row_var = max(row_sq - num_draws * row_mean * row_mean, 0.0) / (num_draws - 1)
            out_row_var[0] += w_stratum * w_stratum * row_var / num_draws


@njit(cache=True, parallel=True)
def _stratified_kernel(weights_flat, weight_offsets, num_sentences, num_moments, task_game, task_j,
                       stratum_probability, stratum_draws, stratum_offsets, cell_offset_start, cell_offsets,
                       cell_t, cell_k, cell_cumulative, cell_base, seed, out_mean, out_var, out_row_var):
    """One task per (game, sentence); each has its own random stream, so results do not depend on
    scheduling. ``out_mean``, ``out_var`` hold every pair, ``out_row_var`` every task. Game g's strata are ``stratum_offsets[g] .. stratum_offsets[g+1]-1``; their h_g + 1
    cell offsets start at ``cell_offsets[cell_offset_start[g]]`` and count from ``cell_base[g]``."""
    for q in prange(task_game.shape[0]):
        g = task_game[q]
        j = task_j[q]
        s_g = num_sentences[g]
        m_g = num_moments[g]
        weights = weights_flat[weight_offsets[g] : weight_offsets[g] + s_g * m_g].reshape((s_g, m_g))
        first, last = stratum_offsets[g], stratum_offsets[g + 1]
        cells = cell_base[g]
        start = weight_offsets[g] + j * m_g
        _stratified_sentence(weights, j, stratum_probability[first:last], stratum_draws[first:last],
                             cell_offsets[cell_offset_start[g] : cell_offset_start[g] + last - first + 1],
                             cell_t[cells:], cell_k[cells:],
                             cell_cumulative[cells:], seed, g, out_mean[start : start + m_g],
                             out_var[start : start + m_g], out_row_var[q : q + 1])


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
    if spread > MAX_LOGIT_RANGE:
        raise ValueError(
            f"Shapley interaction: (max - min) similarity / tau = {spread:.0f} per sentence is too "
            f"large for float64 softmax weights (limit {MAX_LOGIT_RANGE:.0f}); raise tau."
        )
    return np.exp(logits - logits.max(axis=1, keepdims=True))


def pairwise_interaction_batch(sims: Sequence, num_samples: int, seed: int = 0, tau: float = 0.1,
                               return_stderr: bool = False, method: str = "stratified", *,
                               return_mean_stderr: bool = False):
    """Monte Carlo pairwise interactions for several games (videos) in one Numba call.

    Args:
        sims: one ``(s_v m_v)`` similarity matrix per video (numpy or torch; no gradient).
        num_samples: about this many brackets evaluated per (sentence, moment) pair.
        seed: any integer; the draws of sentence j of game g depend only on (seed, g, j).
        tau: softmax temperature.
        return_stderr: also return the standard errors of the estimates.
        method: ``"stratified"``, the only one (kept beside :mod:`g2l.ops.shapley_torch`'s, which
            takes the same arguments): strata over how many other sentences and moments C holds
            (:func:`stratified_plan`, cost polynomial in s and m), coalitions drawn per stratum
            and shared by the pairs of a sentence (:func:`_stratified_sentence`).
        return_mean_stderr: also return the standard errors and, per game, the ``(s_v,)``
            standard error of each sentence's mean estimate over its moments, ``mean_i I[j, i]``.
            The draws serve every moment of a sentence, so the errors of a sentence's estimates
            are correlated and this exceeds ``sqrt(sum_i se_ji^2) / m_v``, which it would be for
            independent pairs; L_SSI's reliability needs it (g2l/losses/ssi.py's
            ``estimate_reliability``).
    Returns:
        a list of ``(s_v m_v)`` arrays ``I[j, i]`` (and a list of standard errors, and a list of
        ``(s_v,)`` standard errors of the row means): float64 numpy for numpy input, float32 torch
        on the input's device for tensor input.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(
            f"Shapley interaction: num_samples must be a positive integer, got {num_samples!r}."
        )
    if method != "stratified":
        raise ValueError(f"Shapley interaction: method must be 'stratified' (the plain estimator is a test "
                         f"reference now), got {method!r}.")
    mats = [_as_sim(sim, f"sims[{g}]") for g, sim in enumerate(sims)]
    weights = [_softmax_weights(sim, tau) for sim in mats]
    num_sentences = np.array([w.shape[0] for w in weights], dtype=np.int64)
    num_moments = np.array([w.shape[1] for w in weights], dtype=np.int64)
    sizes = num_sentences * num_moments
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    weights_flat = np.concatenate([w.ravel() for w in weights] + [np.zeros(0)])
    num_pairs = int(sizes.sum())
    shapes = list(zip(num_sentences, num_moments))
    stats = np.zeros((num_pairs, 2), dtype=np.float64)
    row_var = np.zeros(num_sentences.sum())  # (sentences,) variance of each sentence's mean estimate
    if num_pairs:
        plans = [stratified_plan(int(s_g), int(m_g), int(num_samples)) if s_g * m_g else None
                 for s_g, m_g in shapes]
        used = [plan for plan in plans if plan is not None]
        stratum_offsets = np.concatenate([[0], np.cumsum([p.probability.size if p else 0 for p in plans])])
        cell_base = np.concatenate([[0], np.cumsum([p.cell_t.size if p else 0 for p in plans])])[:-1]
        # One array of cell offsets per game, each of length h_g + 1, laid end to end with the
        # first of game g at stratum_offsets[g] + g.
        cell_offsets = np.concatenate([p.cell_offsets if p else np.zeros(1, dtype=np.int64) for p in plans])
        stratum_offsets_cells = stratum_offsets[:-1] + np.arange(len(plans))
        task_game = np.concatenate([np.full(s_g, g, dtype=np.int64) for g, (s_g, m_g) in enumerate(shapes) if m_g])
        task_j = np.concatenate([np.arange(s_g, dtype=np.int64) for s_g, m_g in shapes if m_g])
        mean, var, task_var = np.zeros(num_pairs), np.zeros(num_pairs), np.zeros(task_game.size)
        with kernel_threads():
            _stratified_kernel(weights_flat, offsets, num_sentences, num_moments, task_game, task_j,
                               np.concatenate([p.probability for p in used]),
                               np.concatenate([p.draws for p in used]).astype(np.int64),
                               stratum_offsets.astype(np.int64), stratum_offsets_cells.astype(np.int64),
                               cell_offsets.astype(np.int64),
                               np.concatenate([p.cell_t for p in used]), np.concatenate([p.cell_k for p in used]),
                               np.concatenate([p.cell_cumulative for p in used]), cell_base.astype(np.int64),
                               np.uint64(int(seed) & MASK64), mean, var, task_var)
        stats[:, 0], stats[:, 1] = mean, np.sqrt(var)
        # Tasks are the sentences of the games with moments, in order; other games' rows stay 0.
        row_var[np.repeat(num_moments > 0, num_sentences)] = task_var
    sentence_offsets = np.concatenate([[0], np.cumsum(num_sentences)]).astype(np.int64)
    means, errors, mean_errors = [], [], []
    for g, sim in enumerate(sims):
        block = stats[offsets[g] : offsets[g + 1]].reshape(num_sentences[g], num_moments[g], 2)
        mean, err = block[..., 0].copy(), block[..., 1].copy()
        mean_err = np.sqrt(row_var[sentence_offsets[g] : sentence_offsets[g + 1]])
        if isinstance(sim, torch.Tensor):
            mean = torch.from_numpy(mean).float().to(sim.device)
            err = torch.from_numpy(err).float().to(sim.device)
            mean_err = torch.from_numpy(mean_err).float().to(sim.device)
        means.append(mean)
        errors.append(err)
        mean_errors.append(mean_err)
    if return_mean_stderr:
        return means, errors, mean_errors
    return (means, errors) if return_stderr else means


def pairwise_interaction(sim, num_samples: int, seed: int = 0, tau: float = 0.1,
                         return_stderr: bool = False, method: str = "stratified"):
    """Monte Carlo pairwise Shapley interaction of every sentence j and moment i of one video.

    Args:
        sim: ``(s m)`` sentence-by-moment cosine similarity (numpy or torch; no gradient).
        num_samples, seed, tau, return_stderr, method: as in :func:`pairwise_interaction_batch`
            (this is a batch of one game, game index 0).
    Returns:
        ``I (s m)`` (and its standard error ``(s m)``); unbiased, error ~ 1 / sqrt(num_samples).
    """
    out = pairwise_interaction_batch([sim], num_samples, seed, tau, return_stderr, method)
    return (out[0][0], out[1][0]) if return_stderr else out[0]
