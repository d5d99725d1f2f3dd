"""The stratified Shapley interaction estimator of L_SSI in batched torch (CPU or GPU).

The same estimator as ``pairwise_interaction_batch(..., method="stratified")`` of
:mod:`g2l.ops.shapley` (docs/method.md section 3), with the same strata and draws per stratum
(:func:`g2l.ops.shapley_plan.stratified_plan`), but every draw of every sentence of every game of
a batch is one row of a tensor computation, so a GPU evaluates them all at once:

* a row is a draw ``(game g, sentence j, stratum h)``; its cell (t, k) is drawn from the stratum's
  conditional law (``searchsorted`` on the cumulative probabilities), T is the t other sentences
  with the smallest random keys, and the random keys of the moments order them (``topk``): Q is
  the first k + 1 moments of the ordering, P the first k;
* as in the Numba kernel, one draw serves every moment i of its sentence: C's moments are
  ``Q - {i}`` when i is in Q, else P, so the varying coalition ``V_i`` (``C u {i}`` or C) is Q
  with one slot ``c_i`` removed (``c_i`` = i's slot in Q, or slot k when i is outside Q) plus,
  when i is outside Q, the extra column i. Each sentence's softmax sum and largest weight over
  ``V_i``, and each column sum over ``V_i``, come from prefix and suffix sums / maxima over Q's
  slots: nothing is subtracted, so a removed moment that dominates its sentence (a logit gap of
  hundreds) cancels nothing away. Only the column maxima over the present sentences need an
  ``(r a q e)`` tensor: ``a`` sentence slots and ``q`` slots of Q, sized by the rows' strata;
* two more entries per row give the fixed coalitions P and Q; the per-stratum sums and sums of
  squares of the brackets give the stratified mean and its variance, exactly as in the Numba
  kernel, and so do those of each draw's mean bracket over its sentence's moments (the real
  ``m_g``, padded moments left out) for the standard error of the row mean ``mean_i I_ji``: one
  draw serves every moment of a sentence, so a row's errors are correlated (L_SSI's reliability
  needs it, g2l/losses/ssi.py).

Rows are grouped on the host (:func:`plan_chunks`, from the games' shapes alone, before any draw)
into chunks of strata of similar sizes, so each chunk's tensors are sized by the players its strata
can hold; the grouping minimises the padded elements plus a per-chunk overhead (a chunk costs
about 60 operations, so on a GPU fewer, larger chunks win), and a chunk holds at most
``max_elements`` elements of its ``(r a q e)`` tensor. The per-game plans are cached by shape;
the whole row plan goes to the device in two copies (floats and integers, pinned and
non-blocking on CUDA), every draw's
players are drawn at once, and the loop over the few chunks then runs without host syncs. Random
draws come from one ``torch.Generator`` on the input's device seeded with ``seed``: reproducible
on one device, not bit-equal to the Numba kernel's SplitMix64 streams (the same law, other draws).
Computation is float64 (brackets are small differences of values near 0.5).

Host syncs: none in :func:`interaction_padded` with ``checked=True`` (the caller vouches for
finite input within the logit range); otherwise one, for the input check, read after all the work
is enqueued; and the copy to numpy when the input is numpy.

Axes: ``b`` games, ``s`` sentences, ``m`` moments (padded); ``r`` rows (draws) of a chunk, ``a``
sentence slots (j, then the T others), ``q`` slots of Q, ``e`` entries (P, Q, then the chunk's
``w`` moments).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from g2l.ops.shapley_plan import MAX_LOGIT_RANGE, stratified_plan

__all__ = ["interaction_padded", "pairwise_interaction_batch", "plan_chunks"]

DEFAULT_MAX_ELEMENTS = 1 << 26  # elements of one (r a q+3 e) float64 chunk on a GPU: 512 MiB (4 at the peak)
CPU_MAX_ELEMENTS = 1 << 20  # on the CPU: 8 MiB, about cache-sized (faster than larger chunks)
# A chunk (about 40 operations) is worth this many padded elements: on a GPU, where each operation
# is a launch (~40 x 5 us), about what 40 passes over 16M float64 elements cost; on the CPU less.
CHUNK_OVERHEAD = {"cpu": 1 << 16, "other": 1 << 24}


@dataclass
class Chunk:
    """Rows ``start .. stop-1`` (in chunk order) drawn from strata whose coalitions hold at most
    ``others`` other sentences and ``slots - 1`` other moments, of games of at most ``width``
    moments and ``sentences`` sentences."""

    start: int
    stop: int
    others: int  # T: other-sentence slots
    slots: int  # q: slots of Q (largest k + 1)
    width: int  # w: moments (padded)
    sentences: int  # sentences (padded), for the draw of T

    def elements(self) -> int:
        """Elements of the chunk's largest tensor, ``(r a q e)`` with ``a = T + 1``, ``e = w + 2``."""
        return (self.stop - self.start) * chunk_row_elements(self.others, self.slots, self.width)


def chunk_row_elements(others: int, slots: int, width: int) -> int:
    """Elements of one row's ``(a q+3 e)`` block: j and T other-sentence slots, q slots of Q
    padded by one zero before and two after, e = w + 2 entries (P, Q, then every moment)."""
    return (others + 1) * (width + 2) * (slots + 3)


@dataclass
class RowPlan:
    """Every draw of a batch, in chunk order (numpy, host), and the stratified groups."""

    game: np.ndarray  # (rows,)
    j: np.ndarray  # (rows,) sentence
    stratum: np.ndarray  # (rows,) global stratum index (into the concatenated cells)
    group: np.ndarray  # (rows,) group = (task, stratum)
    chunks: list[Chunk]
    group_task: np.ndarray  # (groups,) task = (game, sentence), tasks ordered by game then sentence
    group_probability: np.ndarray  # (groups,)
    group_draws: np.ndarray  # (groups,)
    cumulative: np.ndarray  # (cells,) within-stratum cumulative + global stratum index
    cell_t: np.ndarray  # (cells,)
    cell_k: np.ndarray  # (cells,)
    group_game: np.ndarray  # (groups,) the task's game ...
    group_sentence: np.ndarray  # (groups,) ... and sentence


@functools.lru_cache(maxsize=4096)
def _shape_plan(num_sentences: int, num_moments: int, num_samples: int):
    """A game shape's strata (cached: every game of one shape shares them), and per stratum with
    draws its block ``(largest t, largest k + 1, stratum, draws)``."""
    plan = stratified_plan(num_sentences, num_moments, num_samples)
    blocks = []
    for h in range(plan.probability.size):
        cells = slice(plan.cell_offsets[h], plan.cell_offsets[h + 1])
        if plan.draws[h] > 0:
            blocks.append((int(plan.cell_t[cells].max()), int(plan.cell_k[cells].max()) + 1, h, int(plan.draws[h])))
    stratum_of_cell = np.repeat(np.arange(plan.probability.size), np.diff(plan.cell_offsets))
    return plan, blocks, stratum_of_cell


def _group_bins(bins: list[tuple], max_elements: int, overhead: float) -> list[tuple[int, int]]:
    """Consecutive bins ``(T, q, rows, width, sentences)`` -> segments ``[lo, hi)`` minimising the
    padded elements plus ``overhead`` per chunk (a segment of more than ``max_elements`` elements
    is several chunks): a dynamic programme over the bins' order."""
    n = len(bins)
    arr = np.array([b[:4] for b in bins], dtype=np.float64).reshape(-1, 4)  # T, q, rows, width
    best = np.zeros(n + 1)
    choice = np.zeros(n + 1, dtype=np.int64)
    for hi in range(1, n + 1):
        part = arr[:hi][::-1]  # segments [lo, hi) for lo = hi-1 .. 0
        others = np.maximum.accumulate(part[:, 0])
        slots = np.maximum.accumulate(part[:, 1])
        width = np.maximum.accumulate(part[:, 3])
        rows = np.cumsum(part[:, 2])
        per_row = (others + 1) * (width + 2) * (slots + 3)
        chunks = np.ceil(rows / np.maximum(1, np.floor(max_elements / per_row)))
        cost = best[:hi][::-1] + rows * per_row + overhead * chunks
        pick = int(np.argmin(cost))
        best[hi], choice[hi] = cost[pick], hi - 1 - pick
    segments, hi = [], n
    while hi > 0:
        segments.append((int(choice[hi]), hi))
        hi = int(choice[hi])
    return segments[::-1]


def plan_chunks(shapes: Sequence[tuple[int, int]], num_samples: int, max_elements: int = DEFAULT_MAX_ELEMENTS,
                overhead: float | None = None) -> RowPlan:
    """The draws of games of ``shapes`` ((s, m) each), grouped into chunks (host only, no draws).

    Blocks (game, stratum) of ``s * draws`` rows are binned by (largest t, largest k + 1) and the
    bins, in that order, grouped into segments by :func:`_group_bins` (``overhead``: padded elements
    a chunk is worth; default a GPU's ``CHUNK_OVERHEAD["other"]``); a segment of more than
    ``max_elements`` elements is split into chunks of equal rows (one row at least)."""
    overhead = CHUNK_OVERHEAD["other"] if overhead is None else overhead
    cumulative, cell_t, cell_k = [], [], []
    group_game, group_sentence, group_probability, group_draws = [], [], [], []
    bins: dict[tuple[int, int], list] = {}  # (T, q) -> blocks (game, stratum, group base, h_g, draws, s, m)
    num_strata = num_groups = 0
    for g, (s_g, m_g) in enumerate(shapes):
        if s_g * m_g == 0:
            continue
        plan, blocks, stratum_of_cell = _shape_plan(int(s_g), int(m_g), int(num_samples))
        h_g = plan.probability.size
        cumulative.append(plan.cell_cumulative + (num_strata + stratum_of_cell))
        cell_t.append(plan.cell_t)
        cell_k.append(plan.cell_k)
        for others, slots, h, draws in blocks:
            bins.setdefault((others, slots), []).append((g, num_strata + h, num_groups + h, h_g, draws, s_g, m_g))
        group_game.append(np.full(s_g * h_g, g))
        group_sentence.append(np.repeat(np.arange(s_g), h_g))
        group_probability.append(np.tile(plan.probability, s_g))
        group_draws.append(np.tile(plan.draws, s_g))
        num_strata += h_g
        num_groups += s_g * h_g
    keys = sorted(bins)
    summary = [(t, q, sum(b[5] * b[4] for b in bins[t, q]), max(b[6] for b in bins[t, q]),
                max(b[5] for b in bins[t, q])) for t, q in keys]
    chunks: list[Chunk] = []
    ordered = []  # blocks in chunk order
    row = 0
    for lo, hi in _group_bins(summary, max_elements, overhead):
        others, slots = max(b[0] for b in summary[lo:hi]), max(b[1] for b in summary[lo:hi])
        width, sentences = max(b[3] for b in summary[lo:hi]), max(b[4] for b in summary[lo:hi])
        rows = sum(b[2] for b in summary[lo:hi])
        per_chunk = max(1, max_elements // chunk_row_elements(others, slots, width))  # rows
        parts = -(-rows // per_chunk)
        edges = np.linspace(0, rows, parts + 1).round().astype(np.int64)  # at most per_chunk rows each
        chunks += [Chunk(row + int(a), row + int(z), others, slots, width, sentences) for a, z in zip(edges, edges[1:])]
        row += rows
        for key in keys[lo:hi]:
            ordered += bins[key]
    # Row arrays, vectorised over the blocks: a block's rows are draws of sentence 0, then 1, ...
    table = np.array([b[:5] for b in ordered], dtype=np.int64).reshape(-1, 5)  # game, stratum, base, h, draws
    sizes = np.array([b[5] for b in ordered], dtype=np.int64) * table[:, 4]
    block = np.repeat(np.arange(len(ordered)), sizes)  # (rows,)
    in_block = np.arange(block.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    game, stratum, base, h_g, draws = table[block].T
    j = in_block // np.maximum(draws, 1)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    group_game_all = cat(group_game, np.int64)
    task = np.zeros(0, np.int64)
    if group_game_all.size:  # tasks ordered by game then sentence
        first = np.r_[True, (np.diff(group_game_all) != 0) | (np.diff(cat(group_sentence, np.int64)) != 0)]
        task = np.cumsum(first) - 1
    return RowPlan(game.astype(np.int64), j.astype(np.int64), stratum.astype(np.int64), (base + j * h_g).astype(np.int64),
                   chunks, task, cat(group_probability, np.float64), cat(group_draws, np.float64),
                   cat(cumulative, np.float64), cat(cell_t, np.int64), cat(cell_k, np.int64), group_game_all,
                   cat(group_sentence, np.int64))


def _to_device(parts: list[np.ndarray], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Host arrays -> tensors of ``dtype`` on ``device`` in one copy (pinned and non-blocking on
    CUDA: no sync; the caching host allocator keeps the buffer until the copy has run)."""
    sizes = [p.size for p in parts]
    host = torch.empty(sum(sizes), dtype=dtype, pin_memory=device.type == "cuda")
    np.concatenate([np.asarray(p).ravel() for p in parts], out=host.numpy(), casting="unsafe")
    return list(host.to(device, non_blocking=True).split(sizes))


@dataclass
class _Rows:
    """Per-row draws of the whole batch (every chunk's rows are a slice), drawn at once."""

    table_row: torch.Tensor  # (R T+1) rows of the weight table: j, then the others (0: absent)
    slot_col: torch.Tensor  # (R Q+3) columns of Q's slots, padded by a 0 before and two after (0 beyond k)
    entry_col: torch.Tensor  # (R W+2) the extra column of each entry (0: none)
    before: torch.Tensor  # (R W+2) the removed slot c of each entry (Q's: the chunk's q, none) ...
    after: torch.Tensor  # (R W+2) ... and q - c, where the flipped prefix sums hold the slots after c
    outside: torch.Tensor  # (R W) moment i is not in Q
    moment_share: torch.Tensor  # (R W) 1 / m_g for the game's moments, 0 for padded ones: the row mean
    coefficients: torch.Tensor  # (4 R W+2) of the column sums with j and without, the row sums with and without


def _draw_rows(gen, num_rows: int, game, j, stratum, cumulative, cell_t, cell_k, sizes_s, sizes_m, inverse_m,
               chunk_slots, num_slots_s: int, width: int, others: int, slots: int) -> _Rows:
    """Every row's cell, sentences and moment ordering (one set of draws for the whole batch)."""
    device, f64 = game.device, torch.float64
    unit = torch.rand(num_rows, generator=gen, device=device, dtype=f64)
    cell = torch.searchsorted(cumulative, stratum + unit, right=True).clamp_max(cumulative.numel() - 1)
    t, k = cell_t[cell], cell_k[cell]  # (R,)
    base = 1 + game * num_slots_s  # (R,)
    columns = [(base + j)[:, None]]
    if others:  # the t other sentences with the smallest keys
        keys = torch.rand(num_rows, num_slots_s, generator=gen, device=device, dtype=f64)
        arange_s = torch.arange(num_slots_s, device=device)
        keys.masked_fill_((arange_s >= sizes_s[game, None]) | (arange_s == j[:, None]), 2.0)
        chosen = keys.topk(others, dim=1, largest=False).indices  # (R T), in key order
        columns.append(torch.where(torch.arange(others, device=device) < t[:, None], base[:, None] + chosen, 0))
    table_row = torch.cat(columns, 1)  # (R T+1)
    keys = torch.rand(num_rows, width, generator=gen, device=device, dtype=f64)
    arange_w = torch.arange(width, device=device)
    padded = arange_w >= sizes_m[game, None]  # (R W)
    keys.masked_fill_(padded, 2.0)  # padded moments never come first
    in_slots = keys.topk(slots, dim=1, largest=False).indices  # (R Q)
    arange_q = torch.arange(slots, device=device)
    position = torch.full((num_rows, width), slots, dtype=torch.long, device=device)
    position.scatter_(1, in_slots, arange_q.expand(num_rows, slots))  # (R W): slot in Q's order, else Q
    outside = position > k[:, None]
    zeros = torch.zeros(num_rows, 1, dtype=torch.long, device=device)
    removed = torch.cat([k[:, None], chunk_slots[:, None], torch.minimum(position, k[:, None])], 1)  # (R e): P, Q, i
    entry_col = torch.cat([zeros, zeros, torch.where(outside, arange_w + 1, 0)], 1)
    size = torch.cat([k[:, None], k[:, None] + 1, k[:, None] + outside], 1).to(f64)
    nonempty = size > 0
    num_others = t[:, None].to(f64)
    col_scale = torch.where(nonempty, 0.5 / size.clamp_min(1), 0.0)
    row_with = torch.where(nonempty, 0.5 / (num_others + 1), 0.0)
    row_without = torch.where(nonempty & (num_others > 0), 0.5 / num_others.clamp_min(1), 0.0)
    slot_col = torch.cat([zeros, torch.where(arange_q <= k[:, None], in_slots + 1, 0), zeros, zeros], 1)  # (R Q+3)
    coefficients = torch.stack([col_scale, -col_scale, row_with, -row_without])  # (4 R e)
    moment_share = torch.where(padded, 0.0, inverse_m[game, None])  # (R W)
    return _Rows(table_row, slot_col, entry_col, removed, chunk_slots[:, None] - removed, outside, moment_share,
                 coefficients)


def _chunk_brackets(table: torch.Tensor, rows: _Rows, chunk: Chunk) -> torch.Tensor:
    """``(r w)`` brackets of the chunk's rows for every moment i (padded moments: values never read).

    ``table (b*s+1 m+1)``: the softmax weights of sentence a of game g and moment i in row
    ``1 + g * s + a``, column ``1 + i``; row and column 0 are zero (absent sentence slots and
    moment slots point there)."""
    span = slice(chunk.start, chunk.stop)
    num_rows, others, slots, width = chunk.stop - chunk.start, chunk.others, chunk.slots, chunk.width
    num_sentences, num_entries = others + 1, width + 2
    weights = table[:, : width + 1][rows.table_row[span, :num_sentences]]  # (r a w+1)
    shape = (num_rows, num_sentences, num_entries)
    local = weights.gather(2, rows.slot_col[span, None, : slots + 3].expand(num_rows, num_sentences, slots + 3))
    extra = weights.gather(2, rows.entry_col[span, None, :num_entries].expand(shape))  # (r a e)
    at = torch.stack([rows.before[span, None, :num_entries].expand(shape),
                      rows.after[span, None, :num_entries].expand(shape)])  # (2 r a e)
    # Each sentence's sum and largest weight over V_i: the slots before c (prefix sums of the
    # padded slots at c), the slots after c (prefix sums of the flipped ones at q - c), the extra.
    both = torch.stack([local, local.flip(2)])  # (2 r a q+3)
    sums = both.cumsum(3).gather(3, at)  # (2 r a e)
    tops = both.cummax(3).values.gather(3, at)
    row_sum = sums[0] + sums[1] + extra  # (r a e)
    row_top = torch.maximum(torch.maximum(tops[0], tops[1]), extra)
    inverse = torch.where(row_sum > 0, row_sum.reciprocal(), 0.0)  # absent sentence slots: 0, not 0 / 0
    row_share = row_top * inverse
    extra_share = extra * inverse  # (r a e)
    # Column maxima over the present sentences of every slot of Q (the one (r a q+3 e) tensor),
    # with j and without; each entry's column sum over V_i leaves its removed slot out the same way.
    shares = local[:, :, :, None] * inverse[:, :, None, :]  # (r a q+3 e)
    columns = torch.stack([shares.amax(1), shares[:, 1:].amax(1) if others else torch.zeros_like(shares[:, 0])])
    extras = torch.stack([extra_share.amax(1), extra_share[:, 1:].amax(1) if others else torch.zeros_like(extra_share[:, 0])])
    flipped = torch.stack([columns, columns.flip(2)])  # (2 2 r q+3 e): prefix / suffix, with / without j
    col = flipped.cumsum(3).gather(3, at[:, None, :, :1].expand(2, 2, num_rows, 1, num_entries)).sum(0)[:, :, 0]
    values = torch.cat([col + extras, torch.stack([row_share.sum(1), row_share[:, 1:].sum(1)])])  # (4 r e)
    gain = (values * rows.coefficients[:, span, :num_entries]).sum(0)  # (r e): v(C u {i}) - v(C) per entry
    gain_p, gain_q, gain_i = gain[:, :1], gain[:, 1:2], gain[:, 2:]
    return torch.where(rows.outside[span, :width], gain_i - gain_p, gain_q - gain_i)  # (r w)


def _check_input(weights_spread: torch.Tensor, sims: Sequence | None) -> None:
    """The one host read of an unchecked call: every game finite, logit ranges within the limit."""
    if bool(torch.isfinite(weights_spread).all() & (weights_spread <= MAX_LOGIT_RANGE).all()):
        return
    for g, sim in enumerate(sims or []):
        if torch.is_tensor(sim) and sim.numel() and not bool(torch.isfinite(sim).all()):
            raise ValueError(f"Shapley interaction: sims[{g}] contains NaN or infinite values.")
    if not bool(torch.isfinite(weights_spread).all()):
        raise ValueError("Shapley interaction: the similarities contain NaN or infinite values.")
    raise ValueError(
        f"Shapley interaction: (max - min) similarity / tau = {float(weights_spread.max()):.0f} per sentence is "
        f"too large for float64 softmax weights (limit {MAX_LOGIT_RANGE:.0f}); raise tau.")


def interaction_padded(sims: torch.Tensor, shapes: Sequence[tuple[int, int]], num_samples: int, seed: int = 0,
                       tau: float = 0.1, *, max_elements: int | None = None, checked: bool = False,
                       return_mean_stderr: bool = False, _games: Sequence | None = None) -> tuple[torch.Tensor, ...]:
    """Stratified estimates and standard errors ``(b s m)`` float64 (0 where padded) of the games
    ``sims (b s m)`` (game g is ``sims[g, :s_g, :m_g]`` with ``shapes[g] = (s_g, m_g)``, known on the
    host; the rest is padding and never read), on ``sims``'s device; with ``return_mean_stderr``
    also ``(b s)`` the standard error of each sentence's mean estimate over its ``m_g`` moments,
    ``mean_i I[j, i]`` (0 where padded), as :func:`g2l.ops.shapley.pairwise_interaction_batch`'s.

    ``checked=True``: the caller vouches that the games are finite with per-sentence logit ranges
    ``(max - min) / tau <= MAX_LOGIT_RANGE`` (no host read at all); otherwise this is checked with
    one host read, after all the work is enqueued. ``max_elements``: as
    :func:`pairwise_interaction_batch`."""
    device = sims.device
    num_games, num_slots_s, big_m = sims.shape
    if max_elements is None:
        max_elements = CPU_MAX_ELEMENTS if device.type == "cpu" else DEFAULT_MAX_ELEMENTS
    overhead = CHUNK_OVERHEAD["cpu" if device.type == "cpu" else "other"]
    plan = plan_chunks(shapes, int(num_samples), int(max_elements), overhead)
    sizes = np.array([list(shape) for shape in shapes], dtype=np.int64).reshape(-1, 2)
    chunk_slots = np.repeat([c.slots for c in plan.chunks], [c.stop - c.start for c in plan.chunks])  # (rows,)
    row_stratum, cumulative, count, weight, inverse_m = _to_device(
        [plan.stratum, plan.cumulative, plan.group_draws, plan.group_probability,
         1 / np.maximum(sizes[:, 1], 1)], torch.float64, device)
    row_game, row_j, row_group, chunk_slots, cell_t, cell_k, group_row, sizes_s, sizes_m = _to_device(
        [plan.game, plan.j, plan.group, chunk_slots, plan.cell_t, plan.cell_k,
         plan.group_game * num_slots_s + plan.group_sentence, sizes[:, 0], sizes[:, 1]], torch.long, device)
    # Softmax weights exp((sim - row max) / tau), 0 where padded, in a table with a zero row and column.
    present = ((torch.arange(num_slots_s, device=device) < sizes_s[:, None])[:, :, None]
               & (torch.arange(big_m, device=device) < sizes_m[:, None])[:, None, :])  # (b s m)
    logits = sims.detach().to(torch.float64) / tau
    top = logits.masked_fill(~present, -torch.inf).amax(2, keepdim=True)  # (b s 1)
    bottom = logits.masked_fill(~present, torch.inf).amin(2, keepdim=True)
    spread = torch.where(present.any(2, keepdim=True), top - bottom, 0.0)  # (b s 1)
    bad = torch.where(present, ~torch.isfinite(logits), False).any()
    table = torch.zeros(num_games * num_slots_s + 1, big_m + 1, dtype=torch.float64, device=device)
    table[1:, 1:] = torch.exp(logits - top.nan_to_num(0.0, 0.0, 0.0)).where(present, 0.0).view(-1, big_m)
    # (b*s 1+m): column 0 the row mean over the game's moments, then each moment.
    mean = torch.zeros(num_games * num_slots_s, 1 + big_m, dtype=torch.float64, device=device)
    var = torch.zeros_like(mean)
    if plan.chunks:
        gen = torch.Generator(device=device).manual_seed(int(seed))
        rows = _draw_rows(gen, plan.game.size, row_game, row_j, row_stratum, cumulative, cell_t, cell_k,
                          sizes_s, sizes_m, inverse_m, chunk_slots, num_slots_s, max(c.width for c in plan.chunks),
                          max(c.others for c in plan.chunks), max(c.slots for c in plan.chunks))
        moments = torch.zeros(2, plan.group_task.size, 1 + big_m, dtype=torch.float64, device=device)  # (2 groups 1+m)
        for chunk in plan.chunks:
            bracket = _chunk_brackets(table, rows, chunk)  # (r w)
            share = rows.moment_share[chunk.start : chunk.stop, : chunk.width]  # (r w)
            bracket = torch.cat([torch.bmm(bracket[:, None, :], share[:, :, None])[:, 0], bracket], 1)  # (r 1+w)
            moments[:, :, : 1 + chunk.width].index_add_(1, row_group[chunk.start : chunk.stop],
                                                        torch.stack([bracket, bracket * bracket]))
        # Stratified mean and variance: per group (task, stratum), then summed per task.
        count, weight = count[:, None], weight[:, None]  # (groups 1)
        mean_h = moments[0] / count.clamp_min(1)
        var_h = ((moments[1] - count * mean_h * mean_h).clamp_min(0) / (count - 1).clamp_min(1)).where(count > 1, 0.0)
        mean.index_add_(0, group_row, weight * mean_h)
        var.index_add_(0, group_row, weight * weight * var_h / count.clamp_min(1))
    if not checked:
        _check_input(torch.where(bad, torch.inf, spread.amax()) if spread.numel() else spread.new_zeros(1), _games)
    stderr = var.sqrt().view(num_games, num_slots_s, 1 + big_m)
    mean = mean.view(num_games, num_slots_s, 1 + big_m)[:, :, 1:]
    if return_mean_stderr:
        return mean, stderr[:, :, 1:], stderr[:, :, 0]
    return mean, stderr[:, :, 1:]


def pairwise_interaction_batch(sims: Sequence, num_samples: int, seed: int = 0, tau: float = 0.1,
                               return_stderr: bool = False, method: str = "stratified", *,
                               max_elements: int | None = None, return_mean_stderr: bool = False):
    """Stratified Monte Carlo pairwise interactions of several games (videos), in torch.

    Arguments and returns as :func:`g2l.ops.shapley.pairwise_interaction_batch` (only
    ``method="stratified"``): a list of ``(s_v m_v)`` estimates ``I[j, i]`` (and of standard
    errors, and with ``return_mean_stderr`` of the ``(s_v,)`` standard errors of each sentence's
    mean over its moments), float32 tensors on the input's device for tensor input, float64 numpy
    for numpy input.
    ``max_elements`` bounds the size of one chunk's ``(r a q e)`` tensor (:func:`plan_chunks`);
    by default ``CPU_MAX_ELEMENTS`` on the CPU, ``DEFAULT_MAX_ELEMENTS`` on other devices.
    Games are padded into one ``(b s m)`` tensor (one small copy per game) for :func:`interaction_padded`.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"Shapley interaction: num_samples must be a positive integer, got {num_samples!r}.")
    if method != "stratified":
        raise ValueError(f"Shapley interaction: the torch kernel implements method 'stratified' only, got {method!r}.")
    if not tau > 0:
        raise ValueError(f"Shapley interaction: tau must be > 0, got {tau!r}.")
    device = next((s.device for s in sims if isinstance(s, torch.Tensor)), torch.device("cpu"))
    mats = []
    for g, sim in enumerate(sims):
        sim = torch.as_tensor(sim).detach().to(device=device, dtype=torch.float64)
        if sim.ndim != 2:
            raise ValueError(f"Shapley interaction: sims[{g}] must be a (sentences, moments) matrix, got shape {tuple(sim.shape)}.")
        mats.append(sim)
    shapes = [tuple(m.shape) for m in mats]
    padded = torch.zeros(len(mats), max([s for s, _ in shapes] + [1]), max([m for _, m in shapes] + [1]),
                         dtype=torch.float64, device=device)  # (b s m)
    for g, sim in enumerate(mats):
        padded[g, : sim.shape[0], : sim.shape[1]] = sim
    mean, stderr, mean_stderr = interaction_padded(padded, shapes, num_samples, seed, tau, max_elements=max_elements,
                                                   return_mean_stderr=True, _games=mats)
    parts = ([mean[g, :s, :m] for g, (s, m) in enumerate(shapes)], [stderr[g, :s, :m] for g, (s, m) in enumerate(shapes)],
             [mean_stderr[g, :s] for g, (s, _) in enumerate(shapes)])
    if isinstance(sims[0] if len(sims) else None, torch.Tensor):
        results, errors, mean_errors = ([p.float() for p in part] for part in parts)
    else:
        results, errors, mean_errors = ([p.cpu().numpy() for p in part] for part in parts)
    if return_mean_stderr:
        return results, errors, mean_errors
    return (results, errors) if return_stderr else results
