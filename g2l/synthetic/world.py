"""The synthetic benchmark's fixed parts: the presets (what differs between the imitated
benchmarks), the vocabulary (actions, objects, sentence templates), the latent model's parameters
and the latent world one preset and seed share. The model itself is described in
:mod:`g2l.synthetic.benchmark`; :mod:`g2l.synthetic.plan` lays out videos and
:mod:`g2l.synthetic.features` renders their feature rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from g2l.errors import G2LError
from g2l.synthetic.real_stats import RECORDED, RealStatistics

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


# Each random stream is seeded by (seed, preset code, [split code, video index,] stream).
PRESET_CODES = {"charades": 1, "activitynet": 2, "tacos": 3}
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
WORLD_STREAM, PLAN_STREAM, RENDER_STREAM, REPEAT_STREAM = 0, 1, 2, 3


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
    config = get_preset(preset)
    rng = np.random.default_rng([seed, PRESET_CODES[preset], WORLD_STREAM])
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


def get_preset(preset: str) -> Preset:
    if preset not in PRESETS:
        raise G2LError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def render_sentence(action_idx: int, object_idx: int, template: int) -> str:
    """One paraphrase (lower case, as in Charades-STA) of an event."""
    action = ACTIONS[action_idx]
    return TEMPLATES[template].format(s3=action.third_person, ing=action.progressive, past=action.past,
                                      obj=OBJECTS[object_idx])
