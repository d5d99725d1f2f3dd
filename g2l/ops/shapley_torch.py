"""The stratified Shapley interaction estimator of L_SSI in batched torch (CPU or GPU).

The same estimator as ``pairwise_interaction_batch(..., method="stratified")`` of
:mod:`g2l.ops.shapley` (docs/method.md section 3), with the same strata and draws per stratum
(:func:`g2l.ops.shapley_plan.stratified_plan`), but every draw of every sentence of every game of
a batch is one row of a tensor computation, so a GPU evaluates them all at once:

* a row is a draw ``(game g, sentence j, stratum h)``; its cell (t, k) is drawn from the stratum's
  conditional law (``searchsorted`` on the cumulative probabilities), T is the t other sentences
  with the smallest random keys, and the random keys of the moments order them (rank = position);
* as in the Numba kernel, one draw serves every moment i of its sentence: with Q the first k + 1
  moments of the ordering and P the first k, C's moments are ``Q - {i}`` when i is in Q, else P;
  the four values ``v(C u {i} [u {j}])``, ``v(C [u {j}])`` are computed for all i as
  ``(rows i s m)`` tensors, masking absent players out of every softmax sum, max and mean;
* the per-stratum sums and sums of squares of the brackets give the stratified mean and its
  variance, exactly as in the Numba kernel.

Games are padded to the batch's largest s and m with masks. Memory is bounded by processing
rows in chunks of at most ``max_elements`` elements of the ``(rows i s m)`` tensors. Random draws
come from one ``torch.Generator`` on the input's device seeded with ``seed``: reproducible on one
device, not bit-equal to the Numba kernel's SplitMix64 streams (the same law, other draws).
Computation is float64 (brackets are small differences of values near 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from g2l.ops.shapley_plan import stratified_plan

__all__ = ["pairwise_interaction_batch"]

_MAX_LOGIT_RANGE = 700.0  # exp(-700) is still a normal float64
DEFAULT_MAX_ELEMENTS = 1 << 24  # elements of one (rows i s m) float64 chunk: 128 MiB


def _checked(sim, name: str, device: torch.device) -> torch.Tensor:
    sim = torch.as_tensor(sim).detach().to(device=device, dtype=torch.float64)
    if sim.ndim != 2:
        raise ValueError(f"Shapley interaction: {name} must be a (sentences, moments) matrix, got shape {tuple(sim.shape)}.")
    if sim.numel() and not bool(torch.isfinite(sim).all()):
        raise ValueError(f"Shapley interaction: {name} contains NaN or infinite values.")
    return sim


def _values(weights, moment_mask, sentence_mask, j_index):
    """``(v without j, v with j)``, each ``(r i)``: for each row r and moment i, the coalition of
    the moments of ``moment_mask (r i m)`` and the sentences of ``sentence_mask (r s)`` (without
    and with sentence ``j_index (r,)``). ``weights (r s m)`` are softmax weights, 0 when padded."""
    present = moment_mask.to(weights.dtype)  # (r i m)
    row_sum = torch.einsum("rsm,rim->ris", weights, present)  # (r i s)
    align = weights[:, None] * present[:, :, None, :] / row_sum.clamp_min(1e-300)[..., None]  # (r i s m)
    j_row = align[torch.arange(align.shape[0], device=align.device), :, j_index]  # (r i m)
    col_without = (align * sentence_mask[:, None, :, None]).amax(dim=2)  # (r i m)
    col_with = torch.maximum(col_without, j_row)
    num_moments = present.sum(-1)  # (r i)
    num_sentences = sentence_mask.sum(-1, keepdim=True).to(weights.dtype)  # (r 1)
    row_max = align.amax(dim=3)  # (r i s)
    row_without = (row_max * sentence_mask[:, None, :]).sum(-1)  # (r i)
    row_with = row_without + j_row.amax(dim=-1)
    safe_m = num_moments.clamp_min(1)
    v_without = 0.5 * ((col_without * present).sum(-1) / safe_m + row_without / num_sentences.clamp_min(1))
    v_with = 0.5 * ((col_with * present).sum(-1) / safe_m + row_with / (num_sentences + 1))
    empty = num_moments == 0
    v_without = torch.where(empty | (num_sentences == 0), 0.0, v_without)
    return v_without, torch.where(empty, 0.0, v_with)


def pairwise_interaction_batch(sims: Sequence, num_samples: int, seed: int = 0, tau: float = 0.1,
                               return_stderr: bool = False, method: str = "stratified", *,
                               max_elements: int = DEFAULT_MAX_ELEMENTS):
    """Stratified Monte Carlo pairwise interactions of several games (videos), in torch.

    Arguments and returns as :func:`g2l.ops.shapley.pairwise_interaction_batch` (only
    ``method="stratified"``): a list of ``(s_v m_v)`` estimates ``I[j, i]`` (and of standard
    errors), float32 tensors on the input's device for tensor input, float64 numpy for numpy input.
    ``max_elements`` bounds the size of one chunk of the ``(rows i s m)`` value tensors.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"Shapley interaction: num_samples must be a positive integer, got {num_samples!r}.")
    if method != "stratified":
        raise ValueError(f"Shapley interaction: the torch kernel implements method 'stratified' only, got {method!r}.")
    if not tau > 0:
        raise ValueError(f"Shapley interaction: tau must be > 0, got {tau!r}.")
    device = next((s.device for s in sims if isinstance(s, torch.Tensor)), torch.device("cpu"))
    mats = [_checked(sim, f"sims[{g}]", device) for g, sim in enumerate(sims)]
    shapes = [tuple(m.shape) for m in mats]
    big_s = max([s for s, _ in shapes] + [1])
    big_m = max([m for _, m in shapes] + [1])
    weights = torch.zeros(len(mats), big_s, big_m, dtype=torch.float64, device=device)  # (b s m)
    for g, sim in enumerate(mats):
        if sim.numel():
            logits = sim / tau
            spread = float((logits.amax(1) - logits.amin(1)).max())
            if spread > _MAX_LOGIT_RANGE:
                raise ValueError(
                    f"Shapley interaction: (max - min) similarity / tau = {spread:.0f} per sentence is too "
                    f"large for float64 softmax weights (limit {_MAX_LOGIT_RANGE:.0f}); raise tau.")
            weights[g, : sim.shape[0], : sim.shape[1]] = torch.exp(logits - logits.amax(1, keepdim=True))
    # Rows: one per draw, (task = (game, sentence), global stratum); from the plans (host, O(s m) each).
    row_task, row_stratum, row_group, cum, cell_t, cell_k = [], [], [], [], [], []
    task_game, task_j, group_task, group_probability, group_draws = [], [], [], [], []
    num_strata = num_groups = 0
    for g, (s_g, m_g) in enumerate(shapes):
        if s_g * m_g == 0:
            continue
        plan = stratified_plan(s_g, m_g, int(num_samples))
        h_g = plan.probability.size
        # Within-stratum cumulative shifted by the global stratum index: one increasing array.
        stratum_of_cell = np.repeat(np.arange(h_g), np.diff(plan.cell_offsets))
        cum.append(plan.cell_cumulative + (num_strata + stratum_of_cell))
        cell_t.append(plan.cell_t)
        cell_k.append(plan.cell_k)
        for j in range(s_g):
            task = len(task_game)
            task_game.append(g)
            task_j.append(j)
            local = np.repeat(np.arange(h_g), plan.draws)  # (draws,) stratum of each draw
            row_task.append(np.full(local.size, task))
            row_stratum.append(num_strata + local)
            row_group.append(num_groups + local)  # groups: (task, stratum), consecutive per task
            num_groups += h_g
            group_task.append(np.full(h_g, task))
            group_probability.append(plan.probability)
            group_draws.append(plan.draws)
        num_strata += h_g
    results = [torch.zeros(s, m, dtype=torch.float64, device=device) for s, m in shapes]
    errors = [torch.zeros(s, m, dtype=torch.float64, device=device) for s, m in shapes]
    if task_game:
        def to_dev(parts, dtype):
            return torch.as_tensor(np.concatenate(parts), dtype=dtype, device=device)

        row_task, row_stratum, row_group = (to_dev(part, torch.long) for part in (row_task, row_stratum, row_group))
        group_task = to_dev(group_task, torch.long)
        probability, draws = to_dev(group_probability, torch.float64), to_dev(group_draws, torch.float64)
        cum, cell_t, cell_k = to_dev(cum, torch.float64), to_dev(cell_t, torch.long), to_dev(cell_k, torch.long)
        task_game_t, task_j_t = torch.as_tensor(task_game, device=device), torch.as_tensor(task_j, device=device)
        num_tasks = len(task_game)
        sums = torch.zeros(group_task.numel(), big_m, dtype=torch.float64, device=device)  # (groups m)
        squares = torch.zeros_like(sums)
        generator = torch.Generator(device=device).manual_seed(int(seed))
        sizes_s = torch.as_tensor([s for s, _ in shapes], device=device)
        sizes_m = torch.as_tensor([m for _, m in shapes], device=device)
        chunk = max(1, int(max_elements) // (big_m * big_s * big_m))
        arange_s = torch.arange(big_s, device=device)
        arange_m = torch.arange(big_m, device=device)
        eye = torch.eye(big_m, dtype=torch.bool, device=device)  # (i m)
        for start in range(0, row_task.numel(), chunk):
            task = row_task[start : start + chunk]  # (r,)
            stratum = row_stratum[start : start + chunk]
            group = row_group[start : start + chunk]
            rows = task.numel()
            game, j = task_game_t[task], task_j_t[task]
            unit = torch.rand(rows, generator=generator, device=device, dtype=torch.float64)
            cell = torch.searchsorted(cum, stratum.to(torch.float64) + unit, right=True).clamp_max(cum.numel() - 1)
            t, k = cell_t[cell], cell_k[cell]  # (r,)
            # T: the t other real sentences with the smallest keys.
            keys = torch.rand(rows, big_s, generator=generator, device=device, dtype=torch.float64)
            absent = (arange_s[None] >= sizes_s[game, None]) | (arange_s[None] == j[:, None])
            keys = keys.masked_fill(absent, 2.0)
            sentence_rank = keys.argsort(dim=1).argsort(dim=1)  # (r s)
            sentence_mask = (sentence_rank < t[:, None]) & ~absent  # (r s)
            # Moment ordering: position of each real moment; padded ones last.
            keys = torch.rand(rows, big_m, generator=generator, device=device, dtype=torch.float64)
            padded = arange_m[None] >= sizes_m[game, None]
            position = keys.masked_fill(padded, 2.0).argsort(dim=1).argsort(dim=1)  # (r m)
            prefix_k = position < k[:, None]  # P (r m)
            prefix_q = position < (k + 1)[:, None]  # Q
            # For i in Q, C u {i} = Q and C = Q - {i}; otherwise C = P and C u {i} = P + {i}: one
            # varying set per moment, (r i m), and the two fixed ones, (r 1 m).
            in_q = prefix_q[:, :, None]  # (r i 1)
            varying = torch.where(in_q, prefix_q[:, None, :] & ~eye, prefix_k[:, None, :] | eye)
            w = weights[game]  # (r s m)
            mask = sentence_mask.to(torch.float64)
            v_var, v_var_j = _values(w, varying, mask, j)  # (r i)
            v_fix, v_fix_j = _values(w, torch.stack([prefix_q, prefix_k], dim=1), mask, j)  # (r 2)
            gain_q, gain_p = (v_fix_j - v_fix).unbind(1)  # (r,): v(. u {j}) - v(.) at Q and at P
            bracket = torch.where(prefix_q, gain_q[:, None] - (v_var_j - v_var), (v_var_j - v_var) - gain_p[:, None])
            bracket = bracket.masked_fill(padded, 0.0)  # (r i)
            sums.index_add_(0, group, bracket)
            squares.index_add_(0, group, bracket * bracket)
        # Stratified mean and variance: per group (task, stratum), then summed per task.
        count = draws[:, None]  # (groups 1)
        weight = probability[:, None]
        mean_h = sums / count
        var_h = ((squares - count * mean_h * mean_h).clamp_min(0) / (count - 1).clamp_min(1)).where(count > 1, 0.0)
        mean = torch.zeros(num_tasks, big_m, dtype=torch.float64, device=device).index_add_(0, group_task, weight * mean_h)
        var = torch.zeros_like(mean).index_add_(0, group_task, weight * weight * var_h / count)
        for task, (g, jj) in enumerate(zip(task_game, task_j)):
            m_g = shapes[g][1]
            results[g][jj] = mean[task, :m_g]
            errors[g][jj] = var[task, :m_g].sqrt()
    if isinstance(sims[0] if len(sims) else None, torch.Tensor):
        results = [r.float() for r in results]
        errors = [e.float() for e in errors]
    else:
        results = [r.cpu().numpy() for r in results]
        errors = [e.cpu().numpy() for e in errors]
    return (results, errors) if return_stderr else results
