"""The strata of the L_SSI Shapley interaction estimator (docs/method.md section 3), shared by the
Numba kernel (:mod:`g2l.ops.shapley`) and its batched torch twin (:mod:`g2l.ops.shapley_torch`).

For a pair (sentence j, moment i) of a game of ``s`` sentences and ``m`` moments, the context C of
the interaction index has ``|C|`` uniform on ``0 .. n-2`` (``n = s + m``) and is then a uniform
subset of that size of the other ``n - 2`` players. Conditioned on holding t other sentences and
k other moments, C's sentences are a uniform t-subset of the other ``s - 1`` and its moments an
independent uniform k-subset of the other ``m - 1``. So the estimator can stratify over the
``(s m)`` grid of counts (t, k), whose law :func:`context_probabilities` gives exactly, and draw
which players inside a stratum: ``s * m`` cells in all, never the ``2^(s-1)`` subsets of
sentences.

Why this is a good stratification: a bracket's size and spread depend mostly on how large C is
(each of the four values is a mean over C's players, so a bracket shrinks about as 1 / |C|) and
on the share of sentences among C, much less on which sentences; the strata take out the
variance between counts, leaving only the (small) variance of the players within a count. Bins of
counts (Fibonacci widths, finer at small counts where brackets change fastest) keep the number of
strata near ``log(s) log(m)``, so every stratum can get its 2 draws (a within-stratum variance,
hence a calibrated standard error) within the sample budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_LOGIT_RANGE = 700.0  # of the softmax weights' logits: exp(-700) is still a normal float64

__all__ = ["context_probabilities", "count_bins", "StratifiedPlan", "stratified_plan"]


def context_probabilities(num_sentences: int, num_moments: int) -> np.ndarray:
    """``P (s m)``: ``P[t, k]`` is the probability that the context C of a pair (j, i) holds t of
    the other s - 1 sentences and k of the other m - 1 moments, under the index's law (|C| uniform
    on 0..n-2, then a uniform subset): ``C(s-1, t) C(m-1, k) / C(n-2, t+k) / (n-1)``. Sums to 1."""
    others_s, others_m = num_sentences - 1, num_moments - 1
    log_factorial = np.array([math.lgamma(x + 1) for x in range(others_s + others_m + 1)])

    def log_comb(a, b):
        return log_factorial[a] - log_factorial[b] - log_factorial[a - b]

    t = np.arange(num_sentences)[:, None]
    k = np.arange(num_moments)[None, :]
    log_p = log_comb(others_s, t) + log_comb(others_m, k) - log_comb(others_s + others_m, t + k)
    return np.exp(log_p) / (others_s + others_m + 1)


def count_bins(size: int) -> list[tuple[int, int]]:
    """Bins [lo, hi] of a count 0..size-1: {0}, then widths 1, 1, 2, 3, 5, ... (brackets change fast
    at small counts), and {size-1} alone (like {0}, a single set of players)."""
    bins = [(0, 0)]
    lo, widths = 1, [1, 1]
    while lo <= size - 2:
        hi = min(lo + widths[-2] - 1, size - 2)
        bins.append((lo, hi))
        lo = hi + 1
        widths.append(widths[-1] + widths[-2])
    if size >= 2:
        bins.append((size - 1, size - 1))
    return bins


def _merge_bins(bins: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Halve the number of bins: keep {0}, merge the rest in neighbouring pairs."""
    if len(bins) <= 2:
        return [(bins[0][0], bins[-1][1])]
    rest = bins[1:]
    return [bins[0]] + [(rest[a][0], rest[min(a + 1, len(rest) - 1)][1]) for a in range(0, len(rest), 2)]


@dataclass
class StratifiedPlan:
    """The strata of one game's sentences (every sentence of a game has the same plan).

    Stratum h is the set of cells (t, k) ``cell_t/cell_k[cell_offsets[h] : cell_offsets[h+1]]``;
    every cell (t, k) of the ``(s m)`` grid is in exactly one stratum."""

    probability: np.ndarray  # (h,) P(stratum) under the index's law; sums to 1
    draws: np.ndarray  # (h,) draws per sentence
    cell_offsets: np.ndarray  # (h+1,)
    cell_t: np.ndarray  # (s*m,) other sentences in C
    cell_k: np.ndarray  # (s*m,) other moments in C
    cell_cumulative: np.ndarray  # (s*m,) running P(cell | stratum) within each stratum; 1 at its end
    mean_size: np.ndarray  # (h,) E[|C| | stratum] = E[t + k]
    mean_work: np.ndarray  # (h,) E[(t + 1)(k + 1) | stratum]: multiply-adds of one bracket

    def multiply_adds(self, num_moments: int) -> float:
        """Expected multiply-adds of the brackets of one sentence (every moment, every draw)."""
        return float(num_moments * (self.draws * self.mean_work).sum())


def stratified_plan(num_sentences: int, num_moments: int, num_samples: int) -> StratifiedPlan:
    """The strata and their draws for ``num_samples`` draws per sentence.

    Strata are bins of t times bins of k (:func:`count_bins`), merged (halved, the dimension with
    more bins first) until every stratum can have its floor of draws within ``num_samples``: 2
    draws (for a within-stratum variance), 1 where the stratum is a single coalition (t in {0, s-1}
    and k in {0, m-1} alone). The rest go by a Neyman-like allocation, proportional to P(stratum)
    over (E|C| + 1): brackets shrink about as 1 / |C|, and the large coalitions are also the
    expensive ones. The draws sum to ``num_samples`` whenever the floors fit in it."""
    s, m = int(num_sentences), int(num_moments)
    grid = context_probabilities(s, m)  # (s m)
    t_bins, k_bins = count_bins(s), count_bins(m)

    def floors(tb, kb):
        single_t = np.array([lo == hi and lo in (0, s - 1) for lo, hi in tb])
        single_k = np.array([lo == hi and lo in (0, m - 1) for lo, hi in kb])
        return np.where(single_t[:, None] & single_k[None, :], 1, 2).ravel()

    while floors(t_bins, k_bins).sum() > num_samples and (len(t_bins) > 1 or len(k_bins) > 1):
        if len(t_bins) >= len(k_bins):
            t_bins = _merge_bins(t_bins)
        else:
            k_bins = _merge_bins(k_bins)
    floor = floors(t_bins, k_bins)
    t_of, k_of = np.meshgrid(np.arange(s), np.arange(m), indexing="ij")  # (s m)
    probability, mean_size, mean_work, offsets = [], [], [], [0]
    cell_t, cell_k, cell_cumulative = [], [], []
    for t_lo, t_hi in t_bins:
        for k_lo, k_hi in k_bins:
            p = grid[t_lo : t_hi + 1, k_lo : k_hi + 1].ravel()
            t = t_of[t_lo : t_hi + 1, k_lo : k_hi + 1].ravel()
            k = k_of[t_lo : t_hi + 1, k_lo : k_hi + 1].ravel()
            total = p.sum()
            cumulative = np.cumsum(p) / total
            cumulative[-1] = 1.0
            probability.append(total)
            mean_size.append(float((p * (t + k)).sum() / total))
            mean_work.append(float((p * (t + 1) * (k + 1)).sum() / total))
            cell_t.append(t)
            cell_k.append(k)
            cell_cumulative.append(cumulative)
            offsets.append(offsets[-1] + p.size)
    probability = np.array(probability)
    mean_size = np.array(mean_size)
    share = np.where(floor == 1, 0.0, probability / (mean_size + 1))  # single coalitions: no spread
    spare = max(int(num_samples) - int(floor.sum()), 0)
    exact = share / max(share.sum(), 1e-300) * spare if share.sum() > 0 else np.zeros_like(share)
    extra = np.floor(exact).astype(np.int64)
    left = spare - int(extra.sum()) if share.sum() > 0 else 0
    extra[np.argsort(-(exact - extra), kind="stable")[:left]] += 1  # largest remainders
    return StratifiedPlan(probability, (floor + extra).astype(np.int64), np.array(offsets, dtype=np.int64),
                          np.concatenate(cell_t).astype(np.int64), np.concatenate(cell_k).astype(np.int64),
                          np.concatenate(cell_cumulative), mean_size, np.array(mean_work))
