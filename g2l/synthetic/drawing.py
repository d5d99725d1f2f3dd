"""Drawing a demo scene: each shape's piecewise-linear timeline of position, size, colour and
opacity, the background, and the antialiased frame at a time ``t_s`` (``render_frame``), or every
frame at a given rate (``render_scene``). Frame ``i`` shows the scene at ``(i + 0.5) / fps``."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from g2l.synthetic.scene import COLORS, KINDS, SCALES, Scene, base_size_px

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
