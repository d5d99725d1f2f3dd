"""Procedural videos with known ground truth for the built-in demo: coloured shapes that appear,
leave, move, grow, shrink and change colour, written as small H.264 files with captions.

Scene. A ``width x height`` frame (160 x 120 by default) with a plain or softly textured, muted
background (a different colour in every video) and 2-4 shapes, each a circle, square or triangle
in one of five well-separated colours (:data:`COLORS`). No two shapes ever share a name (colour +
kind), not even after a colour change, so a caption names exactly one shape.

Events. Each event acts on one shape over ``[start_s, end_s]`` and changes one of its properties
linearly in time over that span (the shape is still before and after, so the span is exactly the
time during which something happens to it):

    appears   opacity 0 -> 1 (the shape is absent before, present after)
    leaves    opacity 1 -> 0 (present before, absent after)
    moves     centre slides left, right, up or down across the frame (at least 45% of the free range)
    grows     size x 2 (sizes are 0.5, 1 or 2 times the base size)
    shrinks   size / 2
    turns     colour blends into another colour ("turns blue")

Events on one shape never overlap in time; events on different shapes may. Videos are built to be
confusable: the action of an event is preferably one that another shape already did (two shapes
that both move left) or the inverse of the shape's previous action (grows, then shrinks), so the
sentence, not the video alone, says which event is meant. No two events of a video have the same
description (the same shape, action and direction or new colour), so every query has one window.
A small share of events are distractors that no sentence asks about.

Captions. One sentence per queried event, from three paraphrase templates per action
(:data:`TEMPLATES`), naming the shape by its colour at the event's start: "the red circle grows.",
"a red circle gets bigger.", "the red circle is growing.". The whole vocabulary is
:func:`vocabulary` (35 words).

Time. ``duration_s`` is a whole number of seconds (16-40 by default), so a video written at any
integer ``fps`` has exactly ``duration_s * fps`` frames and decodes to that duration. Frame ``i``
shows the scene at the centre of its presentation interval, ``(i + 0.5) / fps``. Event lengths
are ``U(0.1, 0.45) x duration_s`` clipped to 2-12 s (normalised lengths ~0.1-0.45, like
Charades-STA), with times rounded to 0.1 s.

Dataset. ``render_dataset`` writes ``out_dir/videos/<video_id>.mp4``, ``out_dir/{train,val,test}.json``
in the ActivityNet Captions format (``{video_id: {"duration", "timestamps", "sentences"}}``, the
duration being what ``g2l.video.decoding.probe_video`` decodes from the written file),
``out_dir/scenes.json`` (every scene in full, distractors and action labels included, for
per-action analysis) and ``out_dir/meta.json``. Video ``i`` of a split depends only on
``(seed, split, i)``, not on how many videos are asked for.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from g2l.atomic import atomic_path, write_text_atomic
from g2l.errors import G2LError

RENDER_VERSION = 1

# --- the defaults, in one place ----------------------------------------------------------------------

FRAME_WIDTH = 160
FRAME_HEIGHT = 120
DEFAULT_FPS = 8
DEFAULT_NUM_VIDEOS = {"train": 200, "val": 50, "test": 50}
MIN_DURATION_S = 16
MAX_DURATION_S = 40
MIN_EVENT_S = 2.0
MAX_EVENT_S = 12.0
EVENT_FRACTION = (0.1, 0.45)  # event length / video duration, before clipping to [MIN_EVENT_S, MAX_EVENT_S]
NUM_SHAPES = (2, 4)  # inclusive range
NUM_EVENTS = (2, 4)
DISTRACTOR_PROB = 0.15  # chance that an event gets no sentence (at least one event per video is queried)
SIMILAR_BOOST = 3.0  # weight multiplier for an action another shape already did, or the inverse of the shape's last
EDGE_S = 0.5  # no event starts before this or ends later than duration - this
GAP_S = 1.0  # minimum pause between two events of one shape
TIME_STEP_S = 0.1  # event times are rounded to this

BASE_SIZE_FRACTION = 0.2  # base shape size (bounding box side) / frame height
SCALES = (0.5, 1.0, 2.0)  # sizes a shape can have; grows and shrinks step along them
MIN_MOVE_FRACTION = 0.45  # a move covers at least this share of the free range in its direction

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 195, 60),
    "blue": (45, 85, 240),
    "yellow": (245, 220, 35),
    "white": (245, 245, 245),
}
KINDS = ("circle", "square", "triangle")
ACTIONS = ("appears", "leaves", "moves", "grows", "shrinks", "turns")
DIRECTIONS = ("left", "right", "up", "down")
INVERSE = {"appears": "leaves", "leaves": "appears", "grows": "shrinks", "shrinks": "grows",
           "left": "right", "right": "left", "up": "down", "down": "up"}

# {shape} is "<colour> <kind>"; {direction} and {color} fill in moves and turns.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "appears": ("the {shape} appears.", "a {shape} appears.", "the {shape} fades in."),
    "leaves": ("the {shape} leaves.", "a {shape} disappears.", "the {shape} fades away."),
    "moves": ("the {shape} moves {direction}.", "a {shape} slides {direction}.", "the {shape} is moving {direction}."),
    "grows": ("the {shape} grows.", "a {shape} gets bigger.", "the {shape} is growing."),
    "shrinks": ("the {shape} shrinks.", "a {shape} gets smaller.", "the {shape} is shrinking."),
    "turns": ("the {shape} turns {color}.", "a {shape} becomes {color}.", "the {shape} changes to {color}."),
}

SPLITS = ("train", "val", "test")


# --- scene description -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A shape as it is at time 0: kind, colour name, centre in pixels (x from the left, y from
    the top), size as a multiple of the base size, and whether it is visible (False when its
    first event is ``appears``)."""

    kind: str
    color: str
    x: float
    y: float
    scale: float = 1.0
    visible: bool = True


@dataclass(frozen=True)
class Event:
    """One action on ``shapes[shape_idx]`` over ``[start_s, end_s]``.

    ``to_xy`` is the centre after a ``moves`` (``direction`` names it), ``to_color`` the colour
    after a ``turns``. ``sentence`` describes the event; ``queried`` is False for a distractor
    (its sentence is kept but not written to the split files).
    """

    shape_idx: int
    action: str
    start_s: float
    end_s: float
    sentence: str
    direction: str | None = None
    to_xy: tuple[float, float] | None = None
    to_color: str | None = None
    queried: bool = True


@dataclass(frozen=True)
class Scene:
    """Everything needed to render a video; ``events`` are sorted by start time.

    The background is ``background_rgb`` plus, when ``texture_amplitude > 0``, a smooth random
    field of that amplitude (grey levels) drawn from ``texture_seed``.
    """

    width: int
    height: int
    duration_s: float
    background_rgb: tuple[int, int, int]
    texture_seed: int
    texture_amplitude: float
    shapes: tuple[Shape, ...]
    events: tuple[Event, ...]

    @property
    def queries(self) -> list[tuple[str, tuple[float, float]]]:
        """``(sentence, (start_s, end_s))`` of every queried event, in start order."""
        return [(e.sentence, (e.start_s, e.end_s)) for e in self.events if e.queried]


def event_sentences(action: str, color: str, kind: str, *, direction: str | None = None,
                    to_color: str | None = None) -> tuple[str, ...]:
    """All paraphrases of one event, e.g. ``("the red circle grows.", "a red circle gets bigger.", ...)``."""
    if action not in TEMPLATES:
        raise ValueError(f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    return tuple(t.format(shape=f"{color} {kind}", direction=direction, color=to_color) for t in TEMPLATES[action])


def vocabulary() -> list[str]:
    """Every word a caption can use, sorted."""
    words = set(COLORS) | set(KINDS) | set(DIRECTIONS)
    for templates in TEMPLATES.values():
        for template in templates:
            words |= {w for w in template.replace(".", "").split() if not w.startswith("{")}
    return sorted(words)


def base_size_px(height: int) -> float:
    """Base size (bounding-box side, pixels) of a shape at scale 1."""
    return BASE_SIZE_FRACTION * height


# --- sampling ------------------------------------------------------------------------------------------


@dataclass
class _State:
    """A shape's state while events are being sampled in time order."""

    color: str
    x: float
    y: float
    scale: float
    visible: bool | None  # None: no event yet (its first event decides whether it starts visible)
    last: str | None = None  # previous action (direction for moves)


def sample_scene(
    rng: np.random.Generator,
    *,
    width: int = FRAME_WIDTH,
    height: int = FRAME_HEIGHT,
    min_duration_s: int = MIN_DURATION_S,
    max_duration_s: int = MAX_DURATION_S,
    num_events: tuple[int, int] = NUM_EVENTS,
    distractor_prob: float = DISTRACTOR_PROB,
) -> Scene:
    """A random scene (see the module docstring); the same generator state gives the same scene.

    ``num_events`` is an inclusive range; an event with no feasible action left (e.g. a shape that
    has left and already re-appeared once) is dropped, so a scene can hold fewer, never fewer than one.
    """
    if not 1 <= min_duration_s <= max_duration_s:
        raise ValueError(f"Need 1 <= min_duration_s <= max_duration_s, got {min_duration_s} and {max_duration_s}.")
    if min_duration_s < 2 * EDGE_S + MIN_EVENT_S:
        raise ValueError(f"min_duration_s must be at least {2 * EDGE_S + MIN_EVENT_S:g} s to hold one event.")
    duration_s = float(rng.integers(min_duration_s, max_duration_s + 1))
    background_rgb, texture_seed, texture_amplitude = _sample_background(rng)

    num_shapes = int(rng.integers(NUM_SHAPES[0], NUM_SHAPES[1] + 1))
    names = [(c, k) for c in COLORS for k in KINDS]
    picked = rng.choice(len(names), size=num_shapes, replace=False)
    box = _free_box(width, height)
    positions = _sample_positions(rng, num_shapes, box, min_distance=1.7 * base_size_px(height))
    states = [_State(color=names[i][0], x=x, y=y, scale=1.0, visible=None) for i, (x, y) in zip(picked, positions)]
    kinds = [names[i][1] for i in picked]
    used_names = [{(s.color, k)} for s, k in zip(states, kinds)]  # every name each shape ever has

    # When: events per shape, placed without overlap, then all of them in time order.
    count = int(rng.integers(num_events[0], num_events[1] + 1))
    owners = rng.integers(num_shapes, size=count)
    slots = []  # (start_s, end_s, shape_idx)
    for shape_idx in range(num_shapes):
        spans = _sample_spans(rng, int((owners == shape_idx).sum()), duration_s)
        slots += [(start, end, shape_idx) for start, end in spans]
    slots.sort()

    # What: the action of each event, given the shape's state at its start.
    events: list[Event] = []
    descriptions: set[tuple] = set()
    for start_s, end_s, shape_idx in slots:
        state, kind = states[shape_idx], kinds[shape_idx]
        options = _feasible_actions(state, kind, box, descriptions, used_names, shape_idx)
        if not options:
            continue
        done = {(e.action, e.direction) for e in events if e.shape_idx != shape_idx}  # direction: moves only
        weights = np.array([
            (SIMILAR_BOOST if (action, direction if action == "moves" else None) in done else 1.0)
            * (SIMILAR_BOOST if state.last is not None and INVERSE.get(state.last) == (direction or action) else 1.0)
            * (1.0 / sum(1 for a, _ in options if a == action))  # each action equally likely a priori
            for action, direction in options
        ])
        action, direction = options[int(rng.choice(len(options), p=weights / weights.sum()))]
        if state.visible is None:  # first event: it decides whether the shape starts hidden
            state.visible = action != "appears"
        descriptions.add((state.color, kind, action, direction))
        events.append(_apply(rng, state, kind, action, direction, start_s, end_s, shape_idx, box, states, used_names))

    initial = []
    for shape_idx, ((x, y), kind) in enumerate(zip(positions, kinds)):
        first = next((e for e in events if e.shape_idx == shape_idx), None)
        initial.append(Shape(kind=kind, color=names[picked[shape_idx]][0], x=x, y=y, scale=1.0,
                             visible=first is None or first.action != "appears"))
    queried = rng.random(len(events)) >= distractor_prob
    if len(events) and not queried.any():
        queried[int(rng.integers(len(events)))] = True
    events = [Event(**{**asdict(e), "queried": bool(q)}) for e, q in zip(events, queried)]
    return Scene(width=width, height=height, duration_s=duration_s, background_rgb=background_rgb,
                 texture_seed=texture_seed, texture_amplitude=texture_amplitude,
                 shapes=tuple(initial), events=tuple(events))


def _sample_background(rng: np.random.Generator) -> tuple[tuple[int, int, int], int, float]:
    """A muted, darkish colour (far from every shape colour) and maybe a soft texture."""
    hue = rng.random()
    saturation = rng.uniform(0.15, 0.4)
    value = rng.uniform(0.22, 0.42)
    rgb = _hsv_to_rgb(hue, saturation, value)
    textured = rng.random() < 0.5
    return rgb, int(rng.integers(2**31)), float(rng.uniform(8.0, 16.0)) if textured else 0.0


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = value * (1 - saturation), value * (1 - f * saturation), value * (1 - (1 - f) * saturation)
    r, g, b = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][i]
    return int(round(255 * r)), int(round(255 * g)), int(round(255 * b))


def _free_box(width: int, height: int) -> tuple[float, float, float, float]:
    """``(x_min, x_max, y_min, y_max)`` for centres: a shape at the largest size stays inside the frame."""
    margin = 0.5 * max(SCALES) * base_size_px(height) + 1.0
    return margin, width - 1 - margin, margin, height - 1 - margin


def _sample_positions(rng, count: int, box, *, min_distance: float) -> list[tuple[float, float]]:
    """Centres at least ``min_distance`` apart when rejection sampling finds them (best effort)."""
    x_min, x_max, y_min, y_max = box
    best, best_gap = None, -1.0
    for _ in range(200):
        points = np.stack([rng.uniform(x_min, x_max, count), rng.uniform(y_min, y_max, count)], axis=1)  # (n, 2)
        gaps = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(count) * 1e9
        if gaps.min() > best_gap:
            best, best_gap = points, gaps.min()
        if best_gap >= min_distance:
            break
    return [(round(float(x), 1), round(float(y), 1)) for x, y in best]


def _sample_spans(rng, count: int, duration_s: float) -> list[tuple[float, float]]:
    """``count`` non-overlapping spans in ``[EDGE_S, duration_s - EDGE_S]``, at least ``GAP_S`` apart."""
    if count == 0:
        return []
    lengths = np.clip(rng.uniform(*EVENT_FRACTION, count) * duration_s, MIN_EVENT_S, MAX_EVENT_S)  # (count,)
    room = duration_s - 2 * EDGE_S - GAP_S * (count - 1)
    if lengths.sum() > room:  # too many events for one shape: shorten them all (never below the minimum)
        lengths = MIN_EVENT_S + (lengths - MIN_EVENT_S) * max(0.0, room - count * MIN_EVENT_S) / (lengths - MIN_EVENT_S).sum()
    free = max(0.0, room - lengths.sum())
    pauses = rng.dirichlet(np.ones(count + 1)) * free  # (count + 1,)
    spans, t = [], EDGE_S
    for length, pause in zip(lengths, pauses):
        start = t + pause
        spans.append((_round_time(start), _round_time(start + length)))
        t = start + length + GAP_S
    return spans


def _round_time(t: float) -> float:
    return round(round(t / TIME_STEP_S) * TIME_STEP_S, 3)


def _feasible_actions(state: _State, kind: str, box, descriptions: set, used_names: list[set], shape_idx: int) -> list[tuple[str, str | None]]:
    """``(action, direction or new colour)`` options allowed in this state and not yet described."""
    options: list[tuple[str, str | None]] = []
    if state.visible is not True:  # hidden, or no event yet
        options.append(("appears", None))
    if state.visible is not False:
        options.append(("leaves", None))
        for direction in DIRECTIONS:
            if _move_range(state, direction, box) is not None:
                options.append(("moves", direction))
        if state.scale < max(SCALES):
            options.append(("grows", None))
        if state.scale > min(SCALES):
            options.append(("shrinks", None))
        taken = set().union(*(names for i, names in enumerate(used_names) if i != shape_idx))
        options += [("turns", c) for c in COLORS if c != state.color and (c, kind) not in taken]
    return [(a, d) for a, d in options if (state.color, kind, a, d) not in descriptions]


def _move_range(state: _State, direction: str, box) -> tuple[float, float] | None:
    """Interval of target coordinates (x for left/right, y for up/down) of a move, or None."""
    x_min, x_max, y_min, y_max = box
    low, high, here = (x_min, x_max, state.x) if direction in ("left", "right") else (y_min, y_max, state.y)
    step = MIN_MOVE_FRACTION * (high - low)
    if direction in ("left", "up"):
        return (low, here - step) if here - step >= low else None
    return (here + step, high) if here + step <= high else None


def _apply(rng, state: _State, kind: str, action: str, option: str | None, start_s: float, end_s: float,
           shape_idx: int, box, states: list[_State], used_names: list[set]) -> Event:
    """Make the event, choosing its target, and update ``state`` to the shape's state after it."""
    color_before = state.color
    direction = to_xy = to_color = None
    if action == "appears":
        state.visible = True
    elif action == "leaves":
        state.visible = False
    elif action == "moves":
        direction = option
        low, high = _move_range(state, direction, box)
        others = [(s.x, s.y) for i, s in enumerate(states) if i != shape_idx and s.visible is not False]
        candidates = rng.uniform(low, high, 8)  # keep the one that lands farthest from the other shapes
        ends = [(c, state.y) if direction in ("left", "right") else (state.x, c) for c in candidates]
        to_xy = max(ends, key=lambda p: min((math.dist(p, o) for o in others), default=0.0))
        to_xy = (round(float(to_xy[0]), 1), round(float(to_xy[1]), 1))
        state.x, state.y = to_xy
    elif action == "grows":
        state.scale = SCALES[SCALES.index(state.scale) + 1]
    elif action == "shrinks":
        state.scale = SCALES[SCALES.index(state.scale) - 1]
    elif action == "turns":
        to_color = option
        state.color = to_color
        used_names[shape_idx].add((to_color, kind))
    state.last = direction or action
    choices = event_sentences(action, color_before, kind, direction=direction, to_color=to_color)
    return Event(shape_idx=shape_idx, action=action, start_s=start_s, end_s=end_s,
                 sentence=choices[int(rng.integers(len(choices)))], direction=direction, to_xy=to_xy, to_color=to_color)


# --- rendering -----------------------------------------------------------------------------------------

# A shape's drawable state: centre x, centre y, scale, r, g, b, opacity.
_X, _Y, _SCALE, _RGB, _ALPHA = 0, 1, 2, slice(3, 6), 6


def shape_timelines(scene: Scene) -> list[list[tuple[float, float, np.ndarray, np.ndarray]]]:
    """Per shape, ``(start_s, end_s, state_before (7,), state_after (7,))`` of each of its events.

    Raises ``ValueError`` for an inconsistent scene (overlapping events on one shape, an action
    impossible in the shape's state, an unknown name).
    """
    timelines = []
    for shape_idx, shape in enumerate(scene.shapes):
        if shape.kind not in KINDS or shape.color not in COLORS or shape.scale not in SCALES:
            raise ValueError(f"Shape {shape_idx} ({shape}) needs a kind in {KINDS}, a colour in {tuple(COLORS)} and a scale in {SCALES}.")
        state = np.array([shape.x, shape.y, shape.scale, *COLORS[shape.color], float(shape.visible)], dtype=np.float64)
        timeline, last_end = [], -math.inf
        for event in (e for e in scene.events if e.shape_idx == shape_idx):
            if not last_end <= event.start_s < event.end_s:
                raise ValueError(f"Event {event} overlaps the previous event of its shape or ends before it starts.")
            after = state.copy()
            visible = state[_ALPHA] > 0.5
            if event.action == "appears" and not visible:
                after[_ALPHA] = 1.0
            elif event.action == "leaves" and visible:
                after[_ALPHA] = 0.0
            elif event.action == "moves" and visible and event.to_xy is not None:
                after[_X], after[_Y] = event.to_xy
            elif event.action in ("grows", "shrinks") and visible:
                step = 1 if event.action == "grows" else -1
                index = SCALES.index(state[_SCALE]) + step
                if not 0 <= index < len(SCALES):
                    raise ValueError(f"Event {event} takes the shape's size outside {SCALES}.")
                after[_SCALE] = SCALES[index]
            elif event.action == "turns" and visible and event.to_color in COLORS:
                after[_RGB] = COLORS[event.to_color]
            else:
                raise ValueError(f"Event {event} is not possible for shape {shape_idx} in its state at {event.start_s} s.")
            timeline.append((event.start_s, event.end_s, state, after))
            state, last_end = after, event.end_s
        timelines.append(timeline or [(math.inf, math.inf, state, state)])
    return timelines


def _state_at(timeline, t_s: float) -> np.ndarray:
    """Linear interpolation inside an event, the last state after it, the first before it."""
    for start_s, end_s, before, after in timeline:
        if t_s < start_s:
            return before
        if t_s < end_s:
            return before + (t_s - start_s) / (end_s - start_s) * (after - before)
    return timeline[-1][3]


def render_background(scene: Scene) -> np.ndarray:
    """The background ``(h, w, 3)`` float32 in grey levels."""
    h, w = scene.height, scene.width
    image = np.empty((h, w, 3), dtype=np.float32)
    image[:] = scene.background_rgb
    if scene.texture_amplitude > 0:
        rng = np.random.default_rng(scene.texture_seed)
        coarse = rng.uniform(-1.0, 1.0, (4, 5))  # a few blobs across the frame
        rows, cols = np.linspace(0, 3, h), np.linspace(0, 4, w)  # grid coordinates of the pixels
        # upsample the coarse grid: bilinear with a cosine ease between nodes (no visible creases)
        r0 = np.floor(rows).astype(int).clip(0, 2)
        c0 = np.floor(cols).astype(int).clip(0, 3)
        fr = 0.5 - 0.5 * np.cos(np.pi * (rows - r0))[:, None]  # (h, 1)
        fc = 0.5 - 0.5 * np.cos(np.pi * (cols - c0))[None, :]  # (1, w)
        field = ((1 - fr) * (1 - fc) * coarse[r0][:, c0] + (1 - fr) * fc * coarse[r0][:, c0 + 1]
                 + fr * (1 - fc) * coarse[r0 + 1][:, c0] + fr * fc * coarse[r0 + 1][:, c0 + 1])  # (h, w)
        image += scene.texture_amplitude * field[..., None].astype(np.float32)
    return np.clip(image, 0, 255)


def _draw(image: np.ndarray, kind: str, state: np.ndarray, base_size: float) -> None:
    """Blend one antialiased shape into ``image`` (h, w, 3) float32, in place."""
    alpha = float(state[_ALPHA])
    if alpha <= 0.0:
        return
    half = 0.5 * base_size * float(state[_SCALE])
    cx, cy = float(state[_X]), float(state[_Y])
    h, w = image.shape[:2]
    reach = 1.25 * half + 2
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx  # (1, bw)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy  # (bh, 1)
    if kind == "circle":
        distance = np.sqrt(dx * dx + dy * dy) - half  # signed distance, negative inside
    elif kind == "square":
        distance = np.maximum(np.abs(dx), np.abs(dy)) - 0.9 * half  # about the circle's area
    else:  # triangle pointing up, apex at -1.15 half, base at +0.85 half, half-width 1.15 half
        apex, base, half_width = -1.15 * half, 0.85 * half, 1.15 * half
        tall = base - apex
        side = (tall * np.abs(dx) - half_width * (dy - apex)) / math.hypot(tall, half_width)  # past a slanted side
        distance = np.maximum(side, dy - base)
    coverage = np.clip(0.5 - distance, 0.0, 1.0) * alpha  # (bh, bw)
    patch = image[y0:y1, x0:x1]
    patch += coverage[..., None] * (state[_RGB].astype(np.float32) - patch)


def render_frame(scene: Scene, t_s: float, *, background: np.ndarray | None = None,
                 timelines=None) -> np.ndarray:
    """The scene at time ``t_s``: ``(h, w, 3)`` uint8 RGB."""
    background = render_background(scene) if background is None else background
    timelines = shape_timelines(scene) if timelines is None else timelines
    image = background.copy()
    base_size = base_size_px(scene.height)
    for shape, timeline in zip(scene.shapes, timelines):
        _draw(image, shape.kind, _state_at(timeline, t_s), base_size)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def num_frames(scene: Scene, fps: float) -> int:
    """Frames of the scene at ``fps``: ``round(duration_s * fps)``."""
    return int(round(scene.duration_s * fps))


def render_scene(scene: Scene, fps: float) -> Iterator[np.ndarray]:
    """Frames ``(h, w, 3)`` uint8 RGB; frame ``i`` shows time ``(i + 0.5) / fps``."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}.")
    background, timelines = render_background(scene), shape_timelines(scene)
    for i in range(num_frames(scene, fps)):
        yield render_frame(scene, (i + 0.5) / fps, background=background, timelines=timelines)


# --- writing -------------------------------------------------------------------------------------------


def write_video(path: str | Path, scene: Scene, *, fps: float = DEFAULT_FPS, codec: str = "libx264",
                crf: int = 23) -> Path:
    """Encode the scene to ``path`` (mp4, yuv420p) with PyAV; written to a temporary file, then renamed."""
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as temporary, av.open(str(temporary), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        if codec == "libx264":
            stream.codec_context.options = {"crf": str(crf), "preset": "veryfast", "bf": "0"}
        for i, image in enumerate(render_scene(scene, float(rate))):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def render_dataset(
    out_dir: str | Path,
    *,
    num_train: int = DEFAULT_NUM_VIDEOS["train"],
    num_val: int = DEFAULT_NUM_VIDEOS["val"],
    num_test: int = DEFAULT_NUM_VIDEOS["test"],
    seed: int = 0,
    fps: float = DEFAULT_FPS,
    progress: bool = True,
) -> Path:
    """Render the demo dataset into ``out_dir`` (see the module docstring) and return ``out_dir``.

    Video ids are ``<split>_<index:05d>``, so the splits are disjoint. Existing files of the same
    names are replaced.
    """
    from g2l.video.decoding import probe_video

    counts = {"train": num_train, "val": num_val, "test": num_test}
    for split, count in counts.items():
        if count < 0:
            raise G2LError(f"num_{split} must be >= 0, got {count}.")
    if seed < 0:
        raise G2LError(f"seed must be >= 0, got {seed}.")
    if not fps > 0:
        raise G2LError(f"fps must be positive, got {fps}.")
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    scenes: dict[str, dict] = {}
    bar = tqdm(total=sum(counts.values()), desc="rendering", unit="video", disable=not progress, file=sys.stderr)
    for split_idx, split in enumerate(SPLITS):
        entries = {}
        for index in range(counts[split]):
            video_id = f"{split}_{index:05d}"
            scene = sample_scene(np.random.default_rng([seed, split_idx, index]))
            video_path = write_video(out_dir / "videos" / f"{video_id}.mp4", scene, fps=fps)
            duration_s = probe_video(video_path).duration_s
            queries = scene.queries
            entries[video_id] = {
                "duration": round(duration_s, 4),
                "timestamps": [[start, min(end, duration_s)] for _, (start, end) in queries],
                "sentences": [sentence for sentence, _ in queries],
            }
            scenes[video_id] = asdict(scene)
            bar.update(1)
        write_text_atomic(out_dir / f"{split}.json", json.dumps(entries) + "\n")
    bar.close()
    meta = {
        "render_version": RENDER_VERSION, "seed": seed, "fps": fps, "counts": counts,
        "frame_size": [FRAME_WIDTH, FRAME_HEIGHT], "vocabulary": vocabulary(),
        "actions": list(ACTIONS), "colors": COLORS, "kinds": list(KINDS),
    }
    write_text_atomic(out_dir / "scenes.json", json.dumps(scenes) + "\n")
    write_text_atomic(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    return out_dir
