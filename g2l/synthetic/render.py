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

The parts: :mod:`g2l.synthetic.scene` (defaults, vocabulary, the scene description and its
sampling), :mod:`g2l.synthetic.drawing` (frames); this module encodes videos and writes the dataset.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from g2l.errors import G2LError
from g2l.io.atomic import atomic_path, write_text_atomic
from g2l.synthetic.drawing import render_scene
from g2l.synthetic.scene import (
    ACTIONS,
    COLORS,
    DEFAULT_FPS,
    DEFAULT_NUM_VIDEOS,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    KINDS,
    RENDER_VERSION,
    SPLITS,
    Scene,
    sample_scene,
    vocabulary,
)

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
