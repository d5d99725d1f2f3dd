"""The built-in synthetic grounding benchmark: no download, deterministic by seed.

``generate_synthetic(out_dir, preset, seed)`` writes, in the public on-disk layouts::

    out_dir/train.json, val.json, test.json   {video_id: {"duration": s, "timestamps": [[s, e], ...],
                                              "sentences": [...]}} (ActivityNet Captions format)
    out_dir/features.hdf5                     f[video_id] -> (T, F) float32, every split's videos;
                                              attrs: preset, seed, generator_version, ...
    out_dir/meta.json                         generation parameters, vocabulary, counts

so that the real annotation parser and feature store are what read it. Same preset, seed and
sizes give byte-identical files (on one machine: BLAS may round differently elsewhere); video
``i`` of a split, its events and sentences, does not depend on how many videos are asked for.

It is a grounding problem, not a lookup. Every video holds several events, each an *action*
applied to an *object* (``"a person opens the door."``); some are queried (one or more
paraphrased sentences), the others are distractors nobody asks about. Events in one video are
chosen to be confusable: most share the action or the object of an earlier event, and paired
actions (open/close, pick up/put down, turn on/turn off) on the same object are favoured. Queried
events and distractors are drawn from the same distribution, and unannotated *filler* activity
(other action/object pairs, back to back over the whole video) fills the time the events leave
free, so neither "where something happens" nor "where the boundaries are" tells which event a
sentence is about: a text-blind model stays near the prior.

Hidden latent model (one "world" per preset and seed; every video of every split shares it):

* ``K = LATENT_DIM = 64`` latent dimensions. Unit latents per action and per object; paired
  actions share a direction (cosine ``ACTION_PAIR_COSINE``), as do a few object groups
  (door/window/fridge, phone/laptop, towel/bag; cosine ``OBJECT_GROUP_COSINE``). An activity
  (event or filler) has the latent ``v = ACTION_WEIGHT * action + OBJECT_WEIGHT * object``.
* A row at time ``t`` of a video has the latent::

      z(t) = GLOBAL_WEIGHT * g + BACKGROUND_WEIGHT * b_scene(t) + PRESENCE_WEIGHT * sum_o o
             + sum_e a_e h_e(t) / max(1, c(t)) v_e + max(0, FILLER_LEVEL - c(t)) sum_f a_f h_f(t) v_f
             + LATENT_NOISE * n(t),           c(t) = sqrt(sum_e h_e(t)^2)

  ``g``: one world-wide direction (features of all videos look alike, as real CNN features do);
  ``b_scene``: a random per-video background that changes at random scene cuts (boundaries that
  are not events); ``o``: a faint presence of some event objects over the whole video (an object
  alone does not locate its event); ``e``: events with amplitude ``a_e ~ U(0.7, 1.3)`` and a
  trapezoid profile ``h_e`` that is 0.5 exactly at the annotated start and end and ramps over
  ``RAMP_FRACTION`` of the event's length (soft but locatable boundaries), sharing one unit of
  activity where they overlap (``c``), so that busy stretches do not single events out; ``f``:
  the fillers, same profiles, in the room the events leave; ``n``: AR(1) noise
  (``NOISE_CORRELATION``).
  Profiles are averaged over ``PROFILE_SUBSAMPLES`` points per row, so events shorter than a row
  still leave a trace.
* Features ``x(t) = act(z(t) @ W + c + FEATURE_NOISE * m(t))``, ``W (K, F) ~ N(0, 1/K)`` a fixed
  random projection, ``c ~ N(FEATURE_BIAS_MEAN, FEATURE_BIAS_STD)`` a fixed bias, ``m`` white
  noise; ``act`` is a ReLU for the VGG16/C3D presets (non-negative, ~40% non-zero) and the
  identity for ActivityNet's PCA-reduced C3D (signed features).

Statistics: durations, normalised moment lengths and positions, and queries per video follow the
real training splits (:mod:`g2l.synthetic.real_stats` records them; its docstring says how they are
sampled). Sentences per event, distractors and the feature rate are per preset (:data:`PRESETS`).
Feature rate: ``T = clamp(round(duration_s * rows_per_second), min_rows, max_rows)`` rows spread
evenly over the video: Charades 1 row/s (T ~ 30 for a 30 s video, about P = 32 pre-clips);
ActivityNet 0.5 row/s (T median ~ 57, at most 256 = P); TACoS 1 row/s (T median ~ 150, at most
512 = 2 P). Long videos thus get a lower rate; the loaders resample every video to P rows anyway.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from g2l.atomic import atomic_path, write_text_atomic
from g2l.errors import G2LError
from g2l.synthetic.real_stats import FINE_QUANTILE_LEVELS, LENGTH_BINS, QUANTILE_LEVELS, RECORDED, RealStatistics

GENERATOR_VERSION = "1.0"
SPLITS = ("train", "val", "test")

# ----------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class Preset:
    """What differs between the three synthetic benchmarks."""

    name: str
    feature_dim: int  # F, as the benchmark's public features
    feature_name: str
    activation: str  # "relu" (VGG16 / C3D) or "identity" (PCA-reduced C3D)
    rows_per_second: float
    min_rows: int
    max_rows: int
    sizes: dict[str, tuple[int, int, int]]  # "default" / "full" -> (train, val, test) videos
    sentences_per_event: float  # mean sentences describing one queried event
    distractors_mean: float  # mean events per video that no sentence describes (Poisson)
    sentence_style: str  # "charades" | "activitynet" | "tacos"
    video_id_format: str  # str.format with split and index
    statistics: RealStatistics = field(repr=False)


PRESETS: dict[str, Preset] = {
    "charades": Preset(
        name="charades",
        feature_dim=4096,
        feature_name="VGG16 fc7 (vgg_rgb_features.hdf5)",
        activation="relu",
        rows_per_second=1.0,
        min_rows=4,
        max_rows=256,
        # full: the 5,338 training videos of Charades-STA with 10% carved out as val; 1,334 test.
        sizes={"default": (1500, 300, 500), "full": (4804, 534, 1334)},
        sentences_per_event=1.35,  # Charades-STA train: 12,404 queries on 9,190 distinct windows
        distractors_mean=2.0,
        sentence_style="charades",
        video_id_format="{split}{index:05d}",
        statistics=RECORDED["charades"],
    ),
    "activitynet": Preset(
        name="activitynet",
        feature_dim=500,
        feature_name="C3D fc7 PCA-500 (sub_activitynet_v1-3.c3d.hdf5)",
        activation="identity",
        rows_per_second=0.5,
        min_rows=4,
        max_rows=256,
        sizes={"default": (1500, 300, 500), "full": (10009, 4917, 4885)},
        sentences_per_event=1.0,  # every ActivityNet Captions sentence has its own window
        distractors_mean=1.5,
        sentence_style="activitynet",
        video_id_format="v_{split}{index:05d}",
        statistics=RECORDED["activitynet"],
    ),
    "tacos": Preset(
        name="tacos",
        feature_dim=4096,
        feature_name="C3D fc6 (tall_c3d_features.hdf5)",
        activation="relu",
        rows_per_second=1.0,
        min_rows=16,
        max_rows=512,
        sizes={"default": (60, 20, 20), "full": (75, 27, 25)},
        # TACoS has ~130 sentences per video by several annotators on ~47 distinct windows, many
        # of them nested; here ~20 distinct events per video, each described ~6.5 times.
        sentences_per_event=6.5,
        distractors_mean=3.0,
        sentence_style="tacos",
        video_id_format="s{split}-{index:03d}.avi",
        statistics=RECORDED["tacos"],
    ),
}
SIZES = ("default", "full")

# ----------------------------------------------------------------------------------------------
# Vocabulary


@dataclass(frozen=True)
class Action:
    name: str  # base form: "pick up"
    third_person: str  # "picks up"
    progressive: str  # "picking up"
    past: str  # "picked up"
    partner: str | None  # the opposite action, if any


ACTIONS: tuple[Action, ...] = (
    Action("open", "opens", "opening", "opened", "close"),
    Action("close", "closes", "closing", "closed", "open"),
    Action("pick up", "picks up", "picking up", "picked up", "put down"),
    Action("put down", "puts down", "putting down", "put down", "pick up"),
    Action("turn on", "turns on", "turning on", "turned on", "turn off"),
    Action("turn off", "turns off", "turning off", "turned off", "turn on"),
    Action("wash", "washes", "washing", "washed", None),
    Action("hold", "holds", "holding", "held", None),
)
OBJECTS: tuple[str, ...] = ("door", "fridge", "cup", "book", "phone", "laptop", "light", "window", "towel", "bag")
# Which objects each action applies to: 41 (action, object) combinations.
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "open": ("door", "fridge", "book", "laptop", "window", "bag"),
    "close": ("door", "fridge", "book", "laptop", "window", "bag"),
    "pick up": ("cup", "book", "phone", "laptop", "towel", "bag"),
    "put down": ("cup", "book", "phone", "laptop", "towel", "bag"),
    "turn on": ("phone", "laptop", "light"),
    "turn off": ("phone", "laptop", "light"),
    "wash": ("cup", "window", "towel", "door"),
    "hold": ("cup", "book", "phone", "laptop", "towel", "bag", "door"),
}
COMBINATIONS: tuple[tuple[int, int], ...] = tuple(
    (a, OBJECTS.index(o)) for a, action in enumerate(ACTIONS) for o in APPLIES_TO[action.name]
)
OBJECT_GROUPS: tuple[tuple[str, ...], ...] = (("door", "window", "fridge"), ("phone", "laptop"), ("towel", "bag"))
# Paraphrases; {s3} third person, {ing} progressive, {past} past tense, {obj} the object.
TEMPLATES: tuple[str, ...] = (
    "a person {s3} the {obj}.",
    "the person is {ing} a {obj}.",
    "someone {s3} the {obj}.",
    "person {past} the {obj}",
    "a person is {ing} the {obj}.",
    "the person {s3} a {obj}.",
    "a man {s3} the {obj}.",
    "a woman is {ing} the {obj}.",
    "he {past} the {obj}.",
    "she {s3} the {obj}.",
    "person then {s3} the {obj}.",
    "the person {past} a {obj}.",
)

# ----------------------------------------------------------------------------------------------
# Latent model parameters (see the module docstring)

LATENT_DIM = 64
ACTION_PAIR_COSINE = 0.5
OBJECT_GROUP_COSINE = 0.3
GLOBAL_WEIGHT = 1.2
BACKGROUND_WEIGHT = 1.0
SCENE_CUTS_MEAN = 0.7  # Poisson mean of background changes per video
PRESENCE_PROBABILITY = 0.5  # an event's object is faintly present over the whole video
PRESENCE_WEIGHT = 0.3
ACTION_WEIGHT = 1.0
OBJECT_WEIGHT = 1.0
AMPLITUDE_RANGE = (0.7, 1.3)
RAMP_FRACTION = 0.2
LATENT_NOISE = 0.15
NOISE_CORRELATION = 0.5  # AR(1) coefficient of the latent noise between rows
FEATURE_NOISE = 0.1
FEATURE_BIAS_MEAN = -0.1
FEATURE_BIAS_STD = 0.1
PROFILE_SUBSAMPLES = 4  # points per row at which an event's profile is averaged
SIMILAR_PROBABILITY = 0.75  # a new event shares the action or the object of an earlier one
MAX_EVENTS = 30  # events per video, queried or not; leaves 11 of the 41 pairs for filler activity
FILLER_LEVEL = 1.0  # unannotated activity fills the profile left below this level by the events

RENDER_BATCH = 64  # videos per projection product

_PRESET_CODES = {"charades": 1, "activitynet": 2, "tacos": 3}
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_WORLD, _PLAN, _RENDER, _REPEAT = 0, 1, 2, 3

# ----------------------------------------------------------------------------------------------
# World and videos


@dataclass(frozen=True)
class LatentWorld:
    """The hidden generator shared by every video of one preset and seed."""

    action_latents: np.ndarray  # (num_actions, K), unit rows
    object_latents: np.ndarray  # (num_objects, K), unit rows
    global_latent: np.ndarray  # (K,), unit
    projection: np.ndarray  # (K, F) float32
    bias: np.ndarray  # (F,) float32
    activation: str

    def event_latent(self, action_idx: int, object_idx: int) -> np.ndarray:
        """The latent an event adds at full profile, before its amplitude: (K,)."""
        return ACTION_WEIGHT * self.action_latents[action_idx] + OBJECT_WEIGHT * self.object_latents[object_idx]


@dataclass(frozen=True)
class SyntheticEvent:
    action_idx: int
    object_idx: int
    start_s: float
    end_s: float
    amplitude: float
    queried: bool

    @property
    def action(self) -> str:
        return ACTIONS[self.action_idx].name

    @property
    def object(self) -> str:
        return OBJECTS[self.object_idx]


@dataclass(frozen=True)
class SyntheticQuery:
    event_idx: int  # index into the video's events
    sentence: str


@dataclass(frozen=True)
class SyntheticVideo:
    """Everything about one video except its feature rows."""

    video_id: str
    split: str
    index: int
    duration_s: float
    num_rows: int
    events: tuple[SyntheticEvent, ...]
    queries: tuple[SyntheticQuery, ...]  # ordered by window start, then end
    scene_cuts_s: tuple[float, ...]
    present_object_idx: tuple[int, ...]
    fillers: tuple[SyntheticEvent, ...]  # unannotated activity tiling the video, never queried


def build_world(preset: str, seed: int) -> LatentWorld:
    """The latent vectors, projection and bias of ``preset`` at ``seed``."""
    config = _preset(preset)
    rng = np.random.default_rng([seed, _PRESET_CODES[preset], _WORLD])
    k = LATENT_DIM

    def unit(vectors: np.ndarray) -> np.ndarray:
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)

    own_actions = unit(rng.standard_normal((len(ACTIONS), k)))
    names = [a.name for a in ACTIONS]
    action_latents = own_actions.copy()
    for a, action in enumerate(ACTIONS):
        if action.partner is not None and names.index(action.partner) > a:
            shared = unit(rng.standard_normal(k))
            for member in (a, names.index(action.partner)):
                action_latents[member] = (np.sqrt(ACTION_PAIR_COSINE) * shared
                                          + np.sqrt(1 - ACTION_PAIR_COSINE) * own_actions[member])
    object_latents = unit(rng.standard_normal((len(OBJECTS), k)))
    for group in OBJECT_GROUPS:
        shared = unit(rng.standard_normal(k))
        for name in group:
            o = OBJECTS.index(name)
            object_latents[o] = (np.sqrt(OBJECT_GROUP_COSINE) * shared
                                 + np.sqrt(1 - OBJECT_GROUP_COSINE) * object_latents[o])
    global_latent = unit(rng.standard_normal(k))
    projection = (rng.standard_normal((k, config.feature_dim)) / np.sqrt(k)).astype(np.float32)
    bias = (FEATURE_BIAS_MEAN + FEATURE_BIAS_STD * rng.standard_normal(config.feature_dim)).astype(np.float32)
    return LatentWorld(unit(action_latents), unit(object_latents), global_latent, projection, bias, config.activation)


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
    config = _preset(preset)
    stats = config.statistics
    rng = np.random.default_rng([seed, _PRESET_CODES[preset], _SPLIT_CODES[split], index, _PLAN])
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
        repeat_rng = np.random.default_rng([seed, _PRESET_CODES[preset], _SPLIT_CODES[split], index, _REPEAT])
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


def render_sentence(action_idx: int, object_idx: int, template: int) -> str:
    """One paraphrase (lower case, as in Charades-STA) of an event."""
    action = ACTIONS[action_idx]
    return TEMPLATES[template].format(s3=action.third_person, ing=action.progressive, past=action.past,
                                      obj=OBJECTS[object_idx])


def render_latents(world: LatentWorld, video: SyntheticVideo, rng: np.random.Generator) -> np.ndarray:
    """The hidden latent of every feature row of ``video``: ``(T, K)`` float32."""
    num_rows, duration_s = video.num_rows, video.duration_s
    k = LATENT_DIM
    offsets = (np.arange(PROFILE_SUBSAMPLES) + 0.5) / PROFILE_SUBSAMPLES
    times_s = (np.arange(num_rows)[:, None] + offsets[None, :]) * (duration_s / num_rows)  # (T, S) sub-samples

    latent = np.tile(GLOBAL_WEIGHT * world.global_latent, (num_rows, 1))  # (T, K)
    scene_edges_s = np.concatenate([[0.0], video.scene_cuts_s, [np.inf]])
    row_centres_s = times_s.mean(axis=1)
    for scene in range(len(scene_edges_s) - 1):
        background = rng.standard_normal(k)
        background /= np.linalg.norm(background)
        inside = (row_centres_s >= scene_edges_s[scene]) & (row_centres_s < scene_edges_s[scene + 1])
        latent[inside] += BACKGROUND_WEIGHT * background
    for object_idx in video.present_object_idx:
        latent += PRESENCE_WEIGHT * world.object_latents[object_idx]
    # Events share one unit of activity where they overlap (so a busy stretch does not give them
    # away); filler activity takes the room they leave below FILLER_LEVEL.
    profiles = [_profile(event, times_s) for event in video.events]  # each (T, S)
    coverage = np.sqrt(np.sum(np.square(profiles), axis=0)) if profiles else np.zeros_like(times_s)  # (T, S)
    share = 1.0 / np.maximum(coverage, 1.0)
    for event, profile in zip(video.events, profiles):
        weight = event.amplitude * (profile * share).mean(axis=1)  # (T,)
        latent += weight[:, None] * world.event_latent(event.action_idx, event.object_idx)
    room = np.maximum(FILLER_LEVEL - coverage, 0.0)  # (T, S)
    for filler in video.fillers:
        weight = filler.amplitude * (_profile(filler, times_s) * room).mean(axis=1)
        latent += weight[:, None] * world.event_latent(filler.action_idx, filler.object_idx)
    innovations = rng.standard_normal((num_rows, k))
    noise = np.empty_like(innovations)
    noise[0] = innovations[0]
    scale = np.sqrt(1.0 - NOISE_CORRELATION**2)
    for row in range(1, num_rows):
        noise[row] = NOISE_CORRELATION * noise[row - 1] + scale * innovations[row]
    latent += LATENT_NOISE * noise
    return latent.astype(np.float32)


def render_features(world: LatentWorld, videos: list[SyntheticVideo], seed: int, preset: str) -> list[np.ndarray]:
    """The feature rows of each video, ``(T, F)`` float32 (see the module docstring).

    All rows go through the projection in one matrix product: one BLAS call per batch rather than
    per video keeps generation fast on a busy machine.
    """
    rngs = [np.random.default_rng([seed, _PRESET_CODES[preset], _SPLIT_CODES[video.split], video.index, _RENDER])
            for video in videos]
    latents = [render_latents(world, video, rng) for video, rng in zip(videos, rngs)]
    projected = np.concatenate(latents) @ world.projection + world.bias  # (sum T, F)
    features = []
    for rows, rng in zip(np.split(projected, np.cumsum([len(z) for z in latents])[:-1]), rngs):
        rows += np.float32(FEATURE_NOISE) * rng.standard_normal(rows.shape, dtype=np.float32)
        if world.activation == "relu":
            np.maximum(rows, 0.0, out=rows)
        features.append(rows)
    return features


# ----------------------------------------------------------------------------------------------
# Writing


def split_sizes(preset: str, size: str = "default", num_train: int | None = None, num_val: int | None = None,
                num_test: int | None = None) -> dict[str, int]:
    """Videos per split: the preset's ``size`` table, overridden by any count given."""
    config = _preset(preset)
    if size not in SIZES:
        raise G2LError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    counts = dict(zip(SPLITS, config.sizes[size]))
    for split, given in zip(SPLITS, (num_train, num_val, num_test)):
        if given is not None:
            if isinstance(given, bool) or not isinstance(given, int) or given < 1:
                raise G2LError(f"num_{split} must be a positive whole number of videos, got {given!r}")
            counts[split] = given
    return counts


def generate_synthetic(out_dir: str | Path, preset: str, seed: int, size: str = "default", num_train: int | None = None,
                       num_val: int | None = None, num_test: int | None = None, *, feature_key: str | None = None,
                       sparse_annotation: float = 0.0, progress: bool = True) -> Path:
    """Write the synthetic benchmark ``preset`` at ``seed`` into ``out_dir``; return ``out_dir``.

    ``feature_key``: ``None`` stores ``f[video_id] -> (T, F)``; a name such as ``"c3d_features"``
    stores ``f[video_id][feature_key]`` instead (the public ActivityNet layout). Every file is
    written to a temporary name in ``out_dir`` and renamed when complete; ``meta.json`` last.
    ``sparse_annotation`` P in [0, 1]: in the training split a fraction P of the queried events
    happen twice and only one occurrence is annotated (G2L's premise); val and test are unchanged,
    each queried event happening once, so scoring stays unambiguous.
    """
    config = _preset(preset)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise G2LError(f"seed must be a non-negative whole number, got {seed!r}")
    if not 0.0 <= sparse_annotation <= 1.0:
        raise G2LError(f"sparse_annotation must be a fraction in [0, 1], got {sparse_annotation!r}")
    counts = split_sizes(preset, size, num_train, num_val, num_test)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise G2LError(f"output {out_dir} exists and is not a folder; pass a folder path")
    out_dir.mkdir(parents=True, exist_ok=True)

    world = build_world(preset, seed)
    plans = {split: [plan_video(preset, seed, split, i, sparse_annotation) for i in range(counts[split])] for split in SPLITS}
    total = sum(counts.values())
    features_path = out_dir / "features.hdf5"
    with atomic_path(features_path) as temporary:
        with h5py.File(temporary, "w", track_order=False) as store:
            store.attrs.update({"preset": preset, "seed": seed, "generator_version": GENERATOR_VERSION,
                                "sparse_annotation": float(sparse_annotation),
                                "feature_dim": config.feature_dim, "rows_per_second": config.rows_per_second})
            bar = tqdm(total=total, desc=f"synthetic {preset}", unit="video", disable=not progress)
            for split in SPLITS:
                for first in range(0, len(plans[split]), RENDER_BATCH):
                    batch = plans[split][first:first + RENDER_BATCH]
                    for video, rows in zip(batch, render_features(world, batch, seed, preset)):
                        if not feature_key:
                            store.create_dataset(video.video_id, data=rows)
                        else:
                            store.create_group(video.video_id).create_dataset(feature_key, data=rows)
                    bar.update(len(batch))
            bar.close()

    for split in SPLITS:
        entries = {
            video.video_id: {
                "duration": video.duration_s,
                "timestamps": [[video.events[q.event_idx].start_s, video.events[q.event_idx].end_s]
                               for q in video.queries],
                "sentences": [q.sentence for q in video.queries],
            }
            for video in plans[split]
        }
        write_text_atomic(out_dir / f"{split}.json", json.dumps(entries, indent=None, separators=(", ", ": ")) + "\n")

    meta = _describe(config, seed, size, counts, plans, feature_key, sparse_annotation)
    write_text_atomic(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    return out_dir


# ----------------------------------------------------------------------------------------------
# Helpers


def _preset(preset: str) -> Preset:
    if preset not in PRESETS:
        raise G2LError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


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


def _profile(event: SyntheticEvent, times_s: np.ndarray) -> np.ndarray:
    """Trapezoid, 0.5 at the start and end of the event, ramps over RAMP_FRACTION of its length."""
    ramp_s = max(RAMP_FRACTION * (event.end_s - event.start_s), 1e-6)
    rise = np.clip((times_s - event.start_s) / ramp_s + 0.5, 0.0, 1.0)
    fall = np.clip((event.end_s - times_s) / ramp_s + 0.5, 0.0, 1.0)
    return rise * fall


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


def _describe(config: Preset, seed: int, size: str, counts: dict[str, int], plans: dict[str, list[SyntheticVideo]],
              feature_key: str | None, sparse_annotation: float = 0.0) -> dict:
    splits = {}
    for split in SPLITS:
        videos = plans[split]
        splits[split] = {
            "videos": len(videos),
            "queries": sum(len(v.queries) for v in videos),
            "events": sum(len(v.events) for v in videos),
            "rows": sum(v.num_rows for v in videos),
            "unannotated_repeats": sum(count_unannotated_repeats(v) for v in videos),
        }
    words = sorted({w.strip(".") for a, o in COMBINATIONS for t in range(len(TEMPLATES))
                    for w in render_sentence(a, o, t).split()})
    return {
        "generator": "g2l.synthetic.benchmark",
        "generator_version": GENERATOR_VERSION,
        "preset": config.name,
        "seed": seed,
        "size": size,
        "splits": splits,
        "files": {"annotations": [f"{s}.json" for s in SPLITS], "features": "features.hdf5",
                  "feature_layout": "f[video_id] -> (T, F) float32" if not feature_key
                  else f"f[video_id][{feature_key!r}] -> (T, F) float32"},
        "features": {"dim": config.feature_dim, "imitates": config.feature_name, "activation": config.activation,
                     "rows_per_second": config.rows_per_second, "min_rows": config.min_rows,
                     "max_rows": config.max_rows},
        "events": {"sentences_per_event": config.sentences_per_event, "distractors_mean": config.distractors_mean,
                   "similar_probability": SIMILAR_PROBABILITY, "sparse_annotation": sparse_annotation},
        "vocabulary": {
            "actions": [asdict(a) for a in ACTIONS],
            "objects": list(OBJECTS),
            "combinations": [[ACTIONS[a].name, OBJECTS[o]] for a, o in COMBINATIONS],
            "templates": list(TEMPLATES),
            "sentence_style": config.sentence_style,
            "words": words,
        },
        "latent_model": {
            "latent_dim": LATENT_DIM, "action_pair_cosine": ACTION_PAIR_COSINE,
            "object_groups": [list(g) for g in OBJECT_GROUPS], "object_group_cosine": OBJECT_GROUP_COSINE,
            "global_weight": GLOBAL_WEIGHT, "background_weight": BACKGROUND_WEIGHT,
            "scene_cuts_mean": SCENE_CUTS_MEAN, "presence_probability": PRESENCE_PROBABILITY,
            "presence_weight": PRESENCE_WEIGHT, "action_weight": ACTION_WEIGHT, "object_weight": OBJECT_WEIGHT,
            "amplitude_range": list(AMPLITUDE_RANGE), "ramp_fraction": RAMP_FRACTION,
            "latent_noise": LATENT_NOISE, "noise_correlation": NOISE_CORRELATION,
            "feature_noise": FEATURE_NOISE, "feature_bias_mean": FEATURE_BIAS_MEAN,
            "feature_bias_std": FEATURE_BIAS_STD, "filler_level": FILLER_LEVEL,
        },
        "statistics": asdict(config.statistics),
    }
