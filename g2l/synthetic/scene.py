"""The demo videos' scenes: the defaults (frame size, durations, event counts), the vocabulary
(colours, kinds, actions, caption templates), the scene description (``Shape``, ``Event``,
``Scene``) and ``sample_scene``, which lays out one video's shapes and confusable events. Nothing
here draws: :mod:`g2l.synthetic.drawing` turns a scene into frames and :mod:`g2l.synthetic.render`
writes videos and captions (its docstring describes scenes, events and captions in full)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

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
