"""The layout of one synthetic video, without its features: duration, events (action, object,
window, amplitude, queried or not), the sentences that describe the queried ones, scene cuts,
present objects and the unannotated filler activity. Each video has its own random stream, so
video ``i`` of a split does not depend on how many videos are asked for."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from g2l.synthetic.real_stats import FINE_QUANTILE_LEVELS, LENGTH_BINS, QUANTILE_LEVELS, RealStatistics
from g2l.synthetic.world import (
    ACTIONS,
    AMPLITUDE_RANGE,
    COMBINATIONS,
    MAX_EVENTS,
    PLAN_STREAM,
    PRESENCE_PROBABILITY,
    PRESET_CODES,
    REPEAT_STREAM,
    SCENE_CUTS_MEAN,
    SIMILAR_PROBABILITY,
    SPLIT_CODES,
    TEMPLATES,
    SyntheticEvent,
    SyntheticQuery,
    SyntheticVideo,
    get_preset,
    render_sentence,
)

def sample_moment(rng: np.random.Generator, stats: RealStatistics, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``(start, length)`` pairs, each ``(size,)``, with ``start + length <= 1``."""
    u = rng.random(size)
    length = np.interp(u, QUANTILE_LEVELS, stats.length_quantiles)
    length_bin = np.minimum((u * LENGTH_BINS).astype(int), LENGTH_BINS - 1)
    v = rng.random(size)
    tables = np.asarray(stats.relative_start_quantiles)
    relative = np.empty(size)
    for b in range(LENGTH_BINS):
        members = length_bin == b
        relative[members] = np.interp(v[members], QUANTILE_LEVELS, tables[b])
    length = np.clip(length, 0.0, 1.0)
    return relative * (1.0 - length), length


def plan_video(preset: str, seed: int, split: str, index: int, sparse_annotation: float = 0.0) -> SyntheticVideo:
    """Events, windows and sentences of video ``index`` of ``split`` (no features).

    ``sparse_annotation`` P (training split only): each queried event happens a second time with
    probability P, elsewhere in the video and unannotated (see :func:`_add_unannotated_repeats`).
    P = 0 leaves the video exactly as without the option."""
    config = get_preset(preset)
    stats = config.statistics
    rng = np.random.default_rng([seed, PRESET_CODES[preset], SPLIT_CODES[split], index, PLAN_STREAM])
    duration_s = round(float(np.interp(rng.random(), FINE_QUANTILE_LEVELS, stats.duration_quantiles_s)), 2)
    num_rows = int(np.clip(round(duration_s * config.rows_per_second), config.min_rows, config.max_rows))

    num_queries = max(1, round(float(np.interp(rng.random(), FINE_QUANTILE_LEVELS, stats.queries_per_video_quantiles))))
    num_distractors = int(rng.poisson(config.distractors_mean))
    num_queried = 1 + int(rng.binomial(num_queries - 1, 1.0 / config.sentences_per_event))
    num_queried = min(num_queried, MAX_EVENTS)
    num_distractors = min(num_distractors, MAX_EVENTS - num_queried)
    num_events = num_queried + num_distractors

    combos = _sample_combinations(rng, num_events)
    starts, lengths = sample_moment(rng, stats, num_events)
    amplitudes = rng.uniform(*AMPLITUDE_RANGE, size=num_events)
    queried = np.zeros(num_events, dtype=bool)
    queried[rng.permutation(num_events)[:num_queried]] = True
    events = []
    for e in range(num_events):
        start_s, end_s = _round_window(starts[e] * duration_s, (starts[e] + lengths[e]) * duration_s, duration_s)
        action_idx, object_idx = combos[e]
        events.append(SyntheticEvent(action_idx, object_idx, start_s, end_s, float(amplitudes[e]), bool(queried[e])))

    # Every queried event gets one sentence; the rest are paraphrases of random queried events.
    queried_idx = np.flatnonzero(queried)
    described = list(queried_idx) + list(rng.choice(queried_idx, size=num_queries - num_queried))
    templates_used: dict[int, list[int]] = {}
    queries = []
    for e in described:
        used = templates_used.setdefault(int(e), [])
        fresh = [t for t in range(len(TEMPLATES)) if t not in used] or list(range(len(TEMPLATES)))
        template = int(rng.choice(fresh))
        used.append(template)
        queries.append((int(e), template))
    queries.sort(key=lambda q: (events[q[0]].start_s, events[q[0]].end_s, q[0]))
    sentences = tuple(
        SyntheticQuery(e, _style(render_sentence(events[e].action_idx, events[e].object_idx, template),
                                 config.sentence_style, position, rng))
        for position, (e, template) in enumerate(queries)
    )

    num_cuts = int(rng.poisson(SCENE_CUTS_MEAN))
    scene_cuts_s = tuple(sorted(round(float(c), 2) for c in rng.uniform(0, duration_s, size=num_cuts)))
    present = tuple(sorted({event.object_idx for event in events if rng.random() < PRESENCE_PROBABILITY}))
    fillers = _sample_fillers(rng, stats, duration_s, [(e.action_idx, e.object_idx) for e in events])
    video_id = config.video_id_format.format(split=split, index=index)
    video = SyntheticVideo(video_id, split, index, duration_s, num_rows, tuple(events), sentences, scene_cuts_s, present,
                           fillers)
    if sparse_annotation > 0 and split == "train":
        repeat_rng = np.random.default_rng([seed, PRESET_CODES[preset], SPLIT_CODES[split], index, REPEAT_STREAM])
        video = _add_unannotated_repeats(video, repeat_rng, sparse_annotation)
    return video


def _add_unannotated_repeats(video: SyntheticVideo, rng: np.random.Generator, probability: float) -> SyntheticVideo:
    """G2L's premise, sparse annotation: with ``probability``, a queried event happens a second time,
    with the same length, at a position that does not overlap the first, and that occurrence is not
    annotated (a plain contrastive loss pushes the sentence away from it). Appended after the other
    events, so query indices are unchanged; a video too short for a second occurrence keeps one."""
    events = list(video.events)
    for event in video.events:
        if not event.queried or rng.random() >= probability or len(events) >= MAX_EVENTS:
            continue
        length = event.end_s - event.start_s
        before = max(event.start_s - length, 0.0)  # starts in [0, before] end before the event
        after = max(video.duration_s - length - event.end_s, 0.0)  # starts in [end, end + after]
        if before + after <= 0:
            continue
        u = rng.random() * (before + after)
        start_s = u if u < before else event.end_s + (u - before)
        start_s, end_s = _round_window(start_s, start_s + length, video.duration_s)
        amplitude = float(rng.uniform(*AMPLITUDE_RANGE))
        events.append(SyntheticEvent(event.action_idx, event.object_idx, start_s, end_s, amplitude, False))
    return replace(video, events=tuple(events))


def count_unannotated_repeats(video: SyntheticVideo) -> int:
    """Events that repeat a queried event's (action, object) without being annotated."""
    queried = {(e.action_idx, e.object_idx) for e in video.events if e.queried}
    return sum(1 for e in video.events if not e.queried and (e.action_idx, e.object_idx) in queried)


def _sample_combinations(rng: np.random.Generator, num_events: int) -> list[tuple[int, int]]:
    """Distinct (action, object) pairs; most share the action or the object of an earlier one."""
    chosen: list[tuple[int, int]] = []
    names = [a.name for a in ACTIONS]
    for _ in range(num_events):
        unused = [c for c in COMBINATIONS if c not in chosen]
        candidates, weights = unused, [1.0] * len(unused)
        if chosen and rng.random() < SIMILAR_PROBABILITY:
            base_action, base_object = chosen[int(rng.integers(len(chosen)))]
            partner = ACTIONS[base_action].partner
            partner_idx = names.index(partner) if partner is not None else -1
            similar = [(c, 3.0 if (c[0] == partner_idx and c[1] == base_object) else 1.0)
                       for c in unused if c[0] == base_action or c[1] == base_object]
            if similar:
                candidates, weights = [c for c, _ in similar], [w for _, w in similar]
        weights_array = np.asarray(weights) / np.sum(weights)
        chosen.append(candidates[int(rng.choice(len(candidates), p=weights_array))])
    return chosen


def _sample_fillers(rng: np.random.Generator, stats: RealStatistics, duration_s: float,
                    taken: list[tuple[int, int]]) -> tuple[SyntheticEvent, ...]:
    """Back-to-back unannotated activities over the whole video, lengths like the events', each an
    (action, object) pair that no event of the video uses."""
    free = [c for c in COMBINATIONS if c not in taken]
    fillers, start_s = [], 0.0
    while start_s < duration_s:
        length = float(np.interp(rng.random(), QUANTILE_LEVELS, stats.length_quantiles))
        end_s = min(duration_s, start_s + max(length * duration_s, 0.01))
        if duration_s - end_s < 0.5 * length * duration_s:
            end_s = duration_s
        action_idx, object_idx = free[int(rng.integers(len(free)))]
        amplitude = float(rng.uniform(*AMPLITUDE_RANGE))
        fillers.append(SyntheticEvent(action_idx, object_idx, start_s, end_s, amplitude, False))
        start_s = end_s
    return tuple(fillers)


def _round_window(start_s: float, end_s: float, duration_s: float) -> tuple[float, float]:
    """Round to 0.01 s inside ``[0, duration_s]`` keeping ``start_s < end_s``."""
    start_s = min(max(round(start_s, 2), 0.0), duration_s)
    end_s = min(max(round(end_s, 2), 0.0), duration_s)
    if end_s <= start_s:
        if start_s + 0.01 <= duration_s:
            end_s = round(start_s + 0.01, 2)
        else:
            start_s = round(end_s - 0.01, 2)
    return float(start_s), float(end_s)


def _style(sentence: str, style: str, position: int, rng: np.random.Generator) -> str:
    """Charades: as written; ActivityNet: capitalised, later sentences begin with a space (as in the
    public files); TACoS: capitalised, half without the final period."""
    if style == "charades":
        return sentence
    sentence = sentence[0].upper() + sentence[1:]
    if style == "activitynet":
        return sentence if position == 0 else " " + sentence
    if rng.random() < 0.5:
        sentence = sentence.rstrip(".")
    return sentence
