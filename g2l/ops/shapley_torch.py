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
  ``V_i`` come from prefix and suffix sums / maxima over Q's slots (no subtraction, so no
  cancellation), and only the column maxima over the present sentences need an ``(r T q e)``
  tensor: ``T`` other-sentence slots and ``q`` slots of Q, sized by the rows' strata, not by the
  game;
* two more entries per row give the fixed coalitions P and Q; the per-stratum sums and sums of
  squares of the brackets give the stratified mean and its variance, exactly as in the Numba
  kernel.

Rows are grouped on the host (:func:`plan_chunks`, from the plans alone, before any draw) into
chunks of neighbouring strata (sorted by largest t, largest k, m) padded by at most 1.5 times, so
each chunk's tensors are sized by the players its strata can hold; a chunk holds at most
``max_elements`` elements of its ``(r T+1 q e)`` tensor (one row at least). The row plan goes to
the device once; the loop over chunks then runs without host syncs. Random draws come from one
``torch.Generator`` on the input's device seeded with ``seed``: reproducible on one device, not
bit-equal to the Numba kernel's SplitMix64 streams (the same law, other draws). Computation is
float64 (brackets are small differences of values near 0.5). Host syncs: one for the input checks
(finite, logit range), and the copy to numpy when the input is numpy; tensor results stay on the
device.

Axes: ``r`` rows (draws) of a chunk, ``a`` sentence slots (``T`` others, then j), ``q`` slots of
Q, ``e`` entries (the chunk's ``w`` moments, then P and Q).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from g2l.ops.shapley_plan import stratified_plan

__all__ = ["pairwise_interaction_batch", "plan_chunks"]

_MAX_LOGIT_RANGE = 700.0  # exp(-700) is still a normal float64
DEFAULT_MAX_ELEMENTS = 1 << 24  # elements of one (r T+1 q e) float64 chunk on a GPU: 128 MiB
CPU_MAX_ELEMENTS = 1 << 20  # on the CPU: 8 MiB, about cache-sized (faster than larger chunks)
_PADDING_SLACK = 1.5  # a chunk's padded elements stay within 1.5 times its blocks' own sizes ...
_SMALL_CHUNK = 1 << 16  # ... unless it is small: then fewer, larger chunks save per-operation overhead


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
        """Elements of the chunk's largest tensor, ``(r T+1 q e)`` with ``e = w + 2``."""
        return (self.stop - self.start) * chunk_row_elements(self.others, self.slots, self.width)


def chunk_row_elements(others: int, slots: int, width: int) -> int:
    """Elements of one row's ``(T+1 q e)`` block: T other-sentence slots and j, q slots of Q,
    e = w + 2 entries (every moment, then P and Q)."""
    return (others + 1) * (width + 2) * slots


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


def plan_chunks(shapes: Sequence[tuple[int, int]], num_samples: int, max_elements: int = DEFAULT_MAX_ELEMENTS) -> RowPlan:
    """The draws of games of ``shapes`` ((s, m) each), grouped into chunks (host only, no draws).

    Blocks (game, stratum) of ``s * draws`` rows are sorted by (largest t, largest k, m); a chunk
    takes consecutive blocks while its padded elements stay within ``_PADDING_SLACK`` times the
    blocks' own (or below ``_SMALL_CHUNK``), and at most ``max_elements // chunk_row_elements``
    rows (a block is split when it does not fit; a chunk has one row at least)."""
    blocks, cumulative, cell_t, cell_k = [], [], [], []
    group_task, group_probability, group_draws = [], [], []
    num_strata = num_groups = num_tasks = 0
    plans = {}  # games of one shape share their plan
    for g, (s_g, m_g) in enumerate(shapes):
        if s_g * m_g == 0:
            continue
        if (s_g, m_g) not in plans:
            plans[s_g, m_g] = stratified_plan(s_g, m_g, int(num_samples))
        plan = plans[s_g, m_g]
        h_g = plan.probability.size
        stratum_of_cell = np.repeat(np.arange(h_g), np.diff(plan.cell_offsets))
        cumulative.append(plan.cell_cumulative + (num_strata + stratum_of_cell))
        cell_t.append(plan.cell_t)
        cell_k.append(plan.cell_k)
        for h in range(h_g):
            cells = slice(plan.cell_offsets[h], plan.cell_offsets[h + 1])
            if plan.draws[h] > 0:  # block: (largest t, largest k + 1, m, s, game, stratum, group base, draws)
                blocks.append((int(plan.cell_t[cells].max()), int(plan.cell_k[cells].max()) + 1, m_g, s_g,
                               g, num_strata + h, num_groups + h, h_g, int(plan.draws[h])))
        group_task.append(np.repeat(num_tasks + np.arange(s_g), h_g))
        group_probability.append(np.tile(plan.probability, s_g))
        group_draws.append(np.tile(plan.draws, s_g))
        num_strata += h_g
        num_groups += s_g * h_g
        num_tasks += s_g
    blocks.sort(key=lambda block: block[:3])
    chunks: list[Chunk] = []
    pieces = []  # (block, first row of the block in the piece, rows)
    row = work = 0  # work: the current chunk's elements were each block sized by its own strata
    for b, (others, slots, m_g, s_g, *_, draws) in enumerate(blocks):
        own = chunk_row_elements(others, slots, m_g)
        size, done = s_g * draws, 0  # the block's rows: draws of sentence 0, then of sentence 1, ...
        while done < size:
            last = chunks[-1] if chunks else None
            take = 0
            if last is not None:
                grown = Chunk(last.start, last.stop, max(last.others, others), max(last.slots, slots),
                              max(last.width, m_g), max(last.sentences, s_g))
                per_row = chunk_row_elements(grown.others, grown.slots, grown.width)
                take = min(max_elements // per_row - (last.stop - last.start), size - done)
                padded = (grown.stop - grown.start + take) * per_row
                if take > 0 and (padded <= _PADDING_SLACK * (work + take * own) or padded <= _SMALL_CHUNK):
                    chunks[-1] = last = grown
                else:
                    take = 0
            if take == 0:
                last = Chunk(row, row, others, slots, m_g, s_g)
                chunks.append(last)
                work = 0
                take = min(max(1, max_elements // own), size - done)
            last.stop += take
            work += take * own
            pieces.append((b, done, take))
            done += take
            row += take
    # Row arrays, vectorised over the pieces.
    piece_block, piece_first, piece_rows = (np.array([p[a] for p in pieces], dtype=np.int64).reshape(-1)
                                            for a in range(3))
    table = np.array([block[4:] for block in blocks], dtype=np.int64).reshape(-1, 5)  # game, stratum, base, h, draws
    block = np.repeat(piece_block, piece_rows)  # (rows,)
    starts = np.cumsum(piece_rows) - piece_rows
    in_block = np.arange(block.size) - np.repeat(starts - piece_first, piece_rows)
    game, stratum, base, h_g, draws = table[block].T
    j = in_block // np.maximum(draws, 1)
    games, js, strata, groups = [game], [j], [stratum], [base + j * h_g]

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return RowPlan(cat(games, np.int64), cat(js, np.int64), cat(strata, np.int64), cat(groups, np.int64), chunks,
                   cat(group_task, np.int64), cat(group_probability, np.float64), cat(group_draws, np.float64),
                   cat(cumulative, np.float64), cat(cell_t, np.int64), cat(cell_k, np.int64))


def _padded_weights(sims: Sequence, tau: float, device: torch.device):
    """``(b s m)`` softmax weights ``exp((sim - row max) / tau)``, 0 where padded, after checking
    every game (one host sync); and the games' shapes."""
    mats = []
    for g, sim in enumerate(sims):
        sim = torch.as_tensor(sim).detach().to(device=device, dtype=torch.float64)
        if sim.ndim != 2:
            raise ValueError(f"Shapley interaction: sims[{g}] must be a (sentences, moments) matrix, got shape {tuple(sim.shape)}.")
        mats.append(sim)
    shapes = [tuple(m.shape) for m in mats]
    big_s = max([s for s, _ in shapes] + [1])
    big_m = max([m for _, m in shapes] + [1])
    logits = torch.zeros(len(mats), big_s, big_m, dtype=torch.float64, device=device)  # (b s m)
    present = torch.zeros(len(mats), big_s, big_m, dtype=torch.bool, device=device)
    for g, sim in enumerate(mats):
        logits[g, : sim.shape[0], : sim.shape[1]] = sim / tau
        present[g, : sim.shape[0], : sim.shape[1]] = True
    top = logits.masked_fill(~present, -torch.inf).amax(2, keepdim=True)  # (b s 1)
    bottom = logits.masked_fill(~present, torch.inf).amin(2, keepdim=True)
    spread = torch.where(present.any(2, keepdim=True), top - bottom, 0.0).flatten(1).amax(1)  # (b,)
    if len(mats) and not bool(torch.isfinite(spread).all() & (spread <= _MAX_LOGIT_RANGE).all()):  # the one sync
        for g, sim in enumerate(mats):
            if sim.numel() and not bool(torch.isfinite(sim).all()):
                raise ValueError(f"Shapley interaction: sims[{g}] contains NaN or infinite values.")
        worst = float(spread.max())
        raise ValueError(
            f"Shapley interaction: (max - min) similarity / tau = {worst:.0f} per sentence is too "
            f"large for float64 softmax weights (limit {_MAX_LOGIT_RANGE:.0f}); raise tau.")
    weights = torch.exp(logits - torch.where(present.any(2, keepdim=True), top, 0.0)).where(present, 0.0)
    return weights, shapes


def _weight_table(weights: torch.Tensor) -> torch.Tensor:
    """``(b*s+1 m+1)``: a zero row and column, then the rows and columns of ``weights (b s m)``."""
    b, s, m = weights.shape
    table = weights.new_zeros(b * s + 1, m + 1)
    table[1:, 1:] = weights.reshape(b * s, m)
    return table


def _chunk_brackets(table, num_slots_s: int, chunk: Chunk, game, j, t, k, sizes_s, sizes_m, generator):
    """``(r w)`` brackets of the chunk's rows for every moment i (0 where i is padded).

    ``table (b*s+1 m+1)``: the softmax weights of sentence a of game g and moment i in row
    ``1 + g * num_slots_s + a``, column ``1 + i``; row and column 0 are zero (absent sentence slots
    and moment slots point there)."""
    device = table.device
    rows, others, slots, width = game.numel(), chunk.others, chunk.slots, chunk.width
    f64 = torch.float64
    # Sentence slots: the t other sentences with the smallest keys (slots 0..T-1), then j.
    base = 1 + game * num_slots_s  # (r,)
    if others:
        keys = torch.rand(rows, chunk.sentences, generator=generator, device=device, dtype=f64)
        arange_s = torch.arange(chunk.sentences, device=device)
        keys.masked_fill_((arange_s >= sizes_s[game, None]) | (arange_s == j[:, None]), 2.0)
        chosen = keys.topk(others, dim=1, largest=False).indices  # (r T), in key order
        chosen = torch.where(torch.arange(others, device=device) < t[:, None], base[:, None] + chosen, 0)
        table_row = torch.cat([chosen, (base + j)[:, None]], 1)  # (r a)
    else:
        table_row = (base + j)[:, None]
    # Moment ordering: Q's slots are the k + 1 smallest keys; padded moments never come first.
    keys = torch.rand(rows, width, generator=generator, device=device, dtype=f64)
    arange_w = torch.arange(width, device=device)
    padded = arange_w >= sizes_m[game, None]  # (r w)
    keys.masked_fill_(padded, 2.0)
    in_slots = keys.topk(slots, dim=1, largest=False).indices  # (r q)
    arange_q = torch.arange(slots, device=device)
    position = torch.full((rows, width), slots, dtype=torch.long, device=device)
    position.scatter_(1, in_slots, arange_q.expand(rows, slots))  # (r w): slot in Q's order, else q
    outside = position > k[:, None]  # (r w): i is not in Q
    # Entries: moment i (V_i = Q minus slot c_i, plus column i when i is outside Q), then P, Q.
    removed = torch.cat([torch.minimum(position, k[:, None]), k[:, None], torch.full_like(k[:, None], slots)], 1)  # (r e)
    entry_col = torch.cat([torch.where(outside, arange_w + 1, 0), torch.zeros(rows, 2, dtype=torch.long, device=device)], 1)
    size = torch.cat([k[:, None] + outside, k[:, None], k[:, None] + 1], 1).to(f64)  # (r e)
    num_entries = width + 2
    weights = table[:, : width + 1].index_select(0, table_row.flatten()).view(rows, others + 1, width + 1)  # (r a w+1)
    slot_col = torch.where(arange_q <= k[:, None], in_slots + 1, 0)  # (r q)
    local = weights.gather(2, slot_col[:, None, :].expand(rows, others + 1, slots))  # (r a q): Q's slots
    extra = weights.gather(2, entry_col[:, None, :].expand(rows, others + 1, num_entries))  # (r a e)
    # Each sentence's sum and largest weight over V_i, from prefix / suffix sums and maxima over
    # Q's slots (index c: the slots before c and after c; c = q: all of them), plus the extra.
    zero = local.new_zeros(rows, others + 1, 1)
    before_sum = torch.cat([zero, local.cumsum(2)], 2)  # (r a q+1)
    after_sum = torch.cat([local.flip(2).cumsum(2).flip(2)[:, :, 1:], zero, zero], 2)
    before_max = torch.cat([zero, local.cummax(2).values], 2)
    after_max = torch.cat([local.flip(2).cummax(2).values.flip(2)[:, :, 1:], zero, zero], 2)
    index = removed[:, None, :].expand(rows, others + 1, num_entries)  # (r a e)
    row_sum = (before_sum + after_sum).gather(2, index).add_(extra)  # (r a e): two non-negative parts
    row_top = torch.maximum(before_max, after_max).gather(2, index)
    torch.maximum(row_top, extra, out=row_top)
    inverse = row_sum.clamp_min_(1e-300).reciprocal_()  # 0-sum rows (absent) have 0 weights anyway
    row_share = row_top.mul_(inverse)
    row_without = row_share[:, :others].sum(1)  # (r e)
    row_with = row_without + row_share[:, others]
    extra_share = extra.mul_(inverse)  # (r a e)
    # Column maxima over the present sentences of every slot of V_i: the one (r T q e) tensor
    # (entries innermost: the longest axis, contiguous in ``inverse``); then the removed slot's
    # column is taken back out of the sums.
    out_slot = removed.clamp_max(slots - 1)[:, None, :]  # (r 1 e); Q's entry removes nothing
    taken = (removed < slots).to(f64)
    column_with = local[:, others, :, None] * inverse[:, others, None, :]  # (r q e): j's column
    extra_with = extra_share[:, others]  # (r e)
    if others:
        column_without = (local[:, :others, :, None] * inverse[:, :others, None, :]).amax(1)  # (r q e)
        extra_without = extra_share[:, :others].amax(1)  # (r e)
        col_without = column_without.sum(1) - column_without.gather(1, out_slot)[:, 0] * taken + extra_without
        torch.maximum(column_with, column_without, out=column_with)
        extra_with = torch.maximum(extra_without, extra_with)
    else:  # no other sentence in C: v(C) = 0 whatever its columns
        col_without = torch.zeros_like(extra_with)
    col_with = column_with.sum(1) - column_with.gather(1, out_slot)[:, 0] * taken + extra_with  # (r e)
    num_others = t[:, None].to(f64)
    nonempty = size > 0
    safe_size = size.clamp_min(1)
    v_without = torch.where(nonempty & (num_others > 0),
                            0.5 * (col_without / safe_size + row_without / num_others.clamp_min(1)), 0.0)
    v_with = torch.where(nonempty, 0.5 * (col_with / safe_size + row_with / (num_others + 1)), 0.0)
    gain = v_with - v_without  # (r e)
    gain_i, gain_p, gain_q = gain[:, :width], gain[:, width : width + 1], gain[:, width + 1 :]
    bracket = torch.where(outside, gain_i - gain_p, gain_q - gain_i)  # (r w)
    return bracket.masked_fill_(padded, 0.0)


def pairwise_interaction_batch(sims: Sequence, num_samples: int, seed: int = 0, tau: float = 0.1,
                               return_stderr: bool = False, method: str = "stratified", *,
                               max_elements: int | None = None, return_mean_stderr: bool = False):
    """Stratified Monte Carlo pairwise interactions of several games (videos), in torch.

    Arguments and returns as :func:`g2l.ops.shapley.pairwise_interaction_batch` (only
    ``method="stratified"``): a list of ``(s_v m_v)`` estimates ``I[j, i]`` (and of standard
    errors, and with ``return_mean_stderr`` of the ``(s_v,)`` standard errors of each sentence's
    mean over its moments), float32 tensors on the input's device for tensor input, float64 numpy
    for numpy input.
    ``max_elements`` bounds the size of one chunk's ``(r T+1 q e)`` tensor (:func:`plan_chunks`);
    by default ``CPU_MAX_ELEMENTS`` on the CPU, ``DEFAULT_MAX_ELEMENTS`` on other devices.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"Shapley interaction: num_samples must be a positive integer, got {num_samples!r}.")
    if method != "stratified":
        raise ValueError(f"Shapley interaction: the torch kernel implements method 'stratified' only, got {method!r}.")
    if not tau > 0:
        raise ValueError(f"Shapley interaction: tau must be > 0, got {tau!r}.")
    device = next((s.device for s in sims if isinstance(s, torch.Tensor)), torch.device("cpu"))
    weights, shapes = _padded_weights(sims, tau, device)  # (b s m)
    big_m = weights.shape[2]
    results = [torch.zeros(s, m, dtype=torch.float64, device=device) for s, m in shapes]
    errors = [torch.zeros(s, m, dtype=torch.float64, device=device) for s, m in shapes]
    mean_errors = [torch.zeros(s, dtype=torch.float64, device=device) for s, m in shapes]
    if max_elements is None:
        max_elements = CPU_MAX_ELEMENTS if device.type == "cpu" else DEFAULT_MAX_ELEMENTS
    plan = plan_chunks(shapes, int(num_samples), int(max_elements))
    if plan.chunks:
        def to_dev(array, dtype):
            return torch.as_tensor(array, dtype=dtype, device=device)

        row_game, row_j = to_dev(plan.game, torch.long), to_dev(plan.j, torch.long)
        row_stratum, row_group = to_dev(plan.stratum, torch.float64), to_dev(plan.group, torch.long)
        cumulative = to_dev(plan.cumulative, torch.float64)
        cell_t, cell_k = to_dev(plan.cell_t, torch.long), to_dev(plan.cell_k, torch.long)
        sizes_s = to_dev([s for s, _ in shapes], torch.long)
        sizes_m = to_dev([m for _, m in shapes], torch.long)
        # (groups 1+m): column 0 a draw's total over its moments (its spread gives the row mean's
        # standard error: one draw serves every moment), then each moment.
        sums = torch.zeros(plan.group_task.size, 1 + big_m, dtype=torch.float64, device=device)
        squares = torch.zeros_like(sums)
        generator = torch.Generator(device=device).manual_seed(int(seed))
        table = _weight_table(weights)
        for chunk in plan.chunks:
            rows = slice(chunk.start, chunk.stop)
            unit = torch.rand(chunk.stop - chunk.start, generator=generator, device=device, dtype=torch.float64)
            cell = torch.searchsorted(cumulative, row_stratum[rows] + unit, right=True).clamp_max(cumulative.numel() - 1)
            bracket = _chunk_brackets(table, weights.shape[1], chunk, row_game[rows], row_j[rows], cell_t[cell],
                                      cell_k[cell], sizes_s, sizes_m, generator)  # (r w)
            bracket = torch.cat([bracket.sum(1, keepdim=True), bracket], 1)  # (r 1+w)
            sums[:, : 1 + chunk.width].index_add_(0, row_group[rows], bracket)
            squares[:, : 1 + chunk.width].index_add_(0, row_group[rows], bracket * bracket)
        # Stratified mean and variance: per group (task, stratum), then summed per task.
        group_task = to_dev(plan.group_task, torch.long)
        count = to_dev(plan.group_draws, torch.float64)[:, None]  # (groups 1)
        weight = to_dev(plan.group_probability, torch.float64)[:, None]
        mean_h = sums / count.clamp_min(1)
        var_h = ((squares - count * mean_h * mean_h).clamp_min(0) / (count - 1).clamp_min(1)).where(count > 1, 0.0)
        num_tasks = sum(s * (m > 0) for s, m in shapes)
        mean = torch.zeros(num_tasks, 1 + big_m, dtype=torch.float64, device=device).index_add_(0, group_task, weight * mean_h)
        var = torch.zeros_like(mean).index_add_(0, group_task, weight * weight * var_h / count.clamp_min(1))
        task = 0
        for g, (s_g, m_g) in enumerate(shapes):
            if s_g * m_g:
                results[g] = mean[task : task + s_g, 1 : 1 + m_g]
                errors[g] = var[task : task + s_g, 1 : 1 + m_g].sqrt()
                mean_errors[g] = var[task : task + s_g, 0].sqrt() / m_g
                task += s_g
    if isinstance(sims[0] if len(sims) else None, torch.Tensor):
        results = [r.float() for r in results]
        errors = [e.float() for e in errors]
        mean_errors = [e.float() for e in mean_errors]
    else:
        results = [r.cpu().numpy() for r in results]
        errors = [e.cpu().numpy() for e in errors]
        mean_errors = [e.cpu().numpy() for e in mean_errors]
    if return_mean_stderr:
        return results, errors, mean_errors
    return (results, errors) if return_stderr else results
