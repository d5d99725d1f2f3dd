"""The demo's procedural videos: sampled scenes follow their rules, each action changes the pixels
as it says (area x4 for a 2x size step, centroid shift for a move, opacity, colour), written
files decode to the scene's duration, the dataset's JSON loads with no drops, and the tool."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from g2l.data.annotations import load_annotations
from g2l.synthetic.drawing import render_frame, render_scene, shape_timelines
from g2l.synthetic.render import render_dataset, write_video
from g2l.synthetic.scene import (
    ACTIONS,
    COLORS,
    DIRECTIONS,
    KINDS,
    MAX_DURATION_S,
    MAX_EVENT_S,
    MIN_DURATION_S,
    MIN_EVENT_S,
    Event,
    Scene,
    Shape,
    event_sentences,
    sample_scene,
    vocabulary,
)
from g2l.video.decoding import probe_video, read_video_frames

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKGROUND = (60, 60, 70)


def one_shape_scene(action: str, *, kind: str = "circle", color: str = "red", scale: float = 1.0,
                    to_xy=None, to_color=None, direction=None, texture: float = 0.0) -> Scene:
    """A 10 s scene: one shape at the centre, one event over [3, 7] s."""
    shape = Shape(kind=kind, color=color, x=80.0, y=60.0, scale=scale, visible=action != "appears")
    event = Event(shape_idx=0, action=action, start_s=3.0, end_s=7.0, sentence="x", direction=direction,
                  to_xy=to_xy, to_color=to_color)
    return Scene(width=160, height=120, duration_s=10.0, background_rgb=BACKGROUND, texture_seed=1,
                 texture_amplitude=texture, shapes=(shape,), events=(event,))


def mask_of(frame: np.ndarray, rgb, tolerance: float = 60.0) -> np.ndarray:
    """Pixels within ``tolerance`` (RGB distance) of ``rgb``: ``(h, w)`` bool."""
    return np.linalg.norm(frame.astype(np.float64) - np.asarray(rgb, dtype=np.float64), axis=-1) < tolerance


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


# --- sampling ------------------------------------------------------------------------------------------


def test_same_seed_same_scene_and_frames_other_seed_other_scene():
    a, b = sample_scene(np.random.default_rng(7)), sample_scene(np.random.default_rng(7))
    assert a == b
    times = [0.5, a.duration_s / 2, a.duration_s - 0.5]
    assert all(np.array_equal(render_frame(a, t), render_frame(b, t)) for t in times)
    assert sample_scene(np.random.default_rng(8)) != a


@pytest.mark.parametrize("seed", range(300))
def test_sampled_scene_follows_the_rules(seed):
    scene = sample_scene(np.random.default_rng([seed, 0]))
    assert MIN_DURATION_S <= scene.duration_s <= MAX_DURATION_S and scene.duration_s == int(scene.duration_s)
    assert 2 <= len(scene.shapes) <= 4 and 1 <= len(scene.events) <= 4
    assert any(e.queried for e in scene.events)
    assert [e.start_s for e in scene.events] == sorted(e.start_s for e in scene.events)
    shape_timelines(scene)  # consistent: raises on overlaps or impossible actions

    # Replay colours to name every shape over time; a name never belongs to two shapes.
    colors = [s.color for s in scene.shapes]
    names = [{(s.color, s.kind)} for s in scene.shapes]
    descriptions = set()
    for event in scene.events:
        assert 0 <= event.start_s and event.end_s <= scene.duration_s
        assert MIN_EVENT_S - 0.11 <= event.end_s - event.start_s <= MAX_EVENT_S + 0.11
        kind, color = scene.shapes[event.shape_idx].kind, colors[event.shape_idx]
        assert event.sentence in event_sentences(event.action, color, kind, direction=event.direction,
                                                 to_color=event.to_color)
        key = (event.shape_idx, color, event.action, event.direction, event.to_color)
        assert key not in descriptions  # one window per sentence
        descriptions.add(key)
        if event.action == "turns":
            colors[event.shape_idx] = event.to_color
            names[event.shape_idx].add((event.to_color, kind))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert not names[i] & names[j]


def test_sampled_scenes_cover_every_action_and_often_repeat_one():
    scenes = [sample_scene(np.random.default_rng([seed, 1])) for seed in range(300)]
    counts = {action: sum(e.action == action for s in scenes for e in s.events) for action in ACTIONS}
    total = sum(counts.values())
    assert all(0.1 < n / total < 0.25 for n in counts.values()), counts  # about 1/6 each
    repeated = sum(len({e.action for e in s.events}) < len(s.events) for s in scenes)
    assert repeated > 0.3 * len(scenes)  # similar events in one video are common
    fractions = np.array([(e.end_s - e.start_s) / s.duration_s for s in scenes for e in s.events])
    assert 0.05 < fractions.min() and fractions.max() < 0.5 and 0.2 < np.median(fractions) < 0.35


def test_captions_name_colour_shape_and_action():
    assert event_sentences("grows", "red", "circle") == (
        "the red circle grows.", "a red circle gets bigger.", "the red circle is growing.")
    for sentence in event_sentences("moves", "blue", "square", direction="left"):
        assert "blue square" in sentence and sentence.rstrip(".").endswith("left")
    for sentence in event_sentences("turns", "green", "triangle", to_color="yellow"):
        assert "green triangle" in sentence and sentence.rstrip(".").endswith("yellow")
    words = set(vocabulary())
    assert set(COLORS) | set(KINDS) | set(DIRECTIONS) <= words and len(words) < 50
    with pytest.raises(ValueError, match="Unknown action"):
        event_sentences("jumps", "red", "circle")


def test_inconsistent_scenes_are_rejected():
    with pytest.raises(ValueError, match="size"):
        shape_timelines(one_shape_scene("grows", scale=2.0))
    with pytest.raises(ValueError, match="not possible"):
        shape_timelines(replace(one_shape_scene("appears"), shapes=(Shape("circle", "red", 80, 60),)))
    scene = one_shape_scene("grows")
    second = replace(scene.events[0], action="shrinks", start_s=6.0, end_s=8.0)
    with pytest.raises(ValueError, match="overlaps"):
        shape_timelines(replace(scene, events=scene.events + (second,)))


# --- what each action does to the pixels ---------------------------------------------------------------


def areas(scene: Scene, rgb, times) -> np.ndarray:
    return np.array([mask_of(render_frame(scene, t), rgb).sum() for t in times], dtype=np.float64)


@pytest.mark.parametrize("kind", KINDS)
def test_grows_quadruples_the_area_and_shrinks_quarters_it(kind):
    red = COLORS["red"]
    before, middle, after = areas(one_shape_scene("grows", kind=kind), red, [1.0, 5.0, 9.0])
    assert after / before == pytest.approx(4.0, rel=0.1)  # side x 2
    assert before < middle < after
    assert np.ptp(areas(one_shape_scene("grows", kind=kind), red, [0.1, 1.5, 2.9])) == 0  # still before
    before, after = areas(one_shape_scene("shrinks", kind=kind), red, [1.0, 9.0])
    assert after / before == pytest.approx(0.25, rel=0.15)


def test_moves_shift_the_centroid_only_during_the_event():
    scene = one_shape_scene("moves", to_xy=(30.0, 60.0), direction="left", texture=12.0)
    red = COLORS["red"]
    c = {t: centroid(mask_of(render_frame(scene, t), red)) for t in (1.0, 2.9, 5.0, 7.1, 9.0)}
    assert np.allclose(c[1.0], c[2.9]) and np.allclose(c[7.1], c[9.0])
    assert c[9.0] - c[1.0] == pytest.approx([-50.0, 0.0], abs=0.5)
    assert c[5.0][0] == pytest.approx(55.0, abs=0.5)  # halfway, linear in time


def test_appears_and_leaves_change_presence():
    red = COLORS["red"]
    before, after = areas(one_shape_scene("appears"), red, [2.9, 7.1])
    assert before == 0 and after > 300
    halfway = render_frame(one_shape_scene("appears"), 5.0)[60, 80]  # the shape's centre, opacity 0.5
    assert halfway == pytest.approx((np.array(red) + BACKGROUND) / 2, abs=1)
    before, after = areas(one_shape_scene("leaves"), red, [2.9, 7.1])
    assert before > 300 and after == 0
    frame = render_frame(one_shape_scene("leaves"), 9.0)
    assert (frame == np.array(BACKGROUND, dtype=np.uint8)).all()  # nothing left behind


def test_turns_changes_the_colour():
    scene = one_shape_scene("turns", to_color="blue")
    red, blue = COLORS["red"], COLORS["blue"]
    start, end = render_frame(scene, 1.0), render_frame(scene, 9.0)
    assert mask_of(start, red).sum() > 300 and mask_of(start, blue).sum() == 0
    assert mask_of(end, blue).sum() == pytest.approx(mask_of(start, red).sum(), rel=0.02)
    assert mask_of(end, red).sum() == 0


# --- writing ------------------------------------------------------------------------------------------


def test_written_video_decodes_to_the_scene(tmp_path):
    scene = replace(sample_scene(np.random.default_rng(3)), duration_s=30.0)
    path = write_video(tmp_path / "scene.mp4", scene, fps=8)
    assert [p.name for p in tmp_path.iterdir()] == ["scene.mp4"]  # no temporary file left
    assert path.stat().st_size < 200_000
    info = probe_video(path)
    assert abs(info.duration_s - scene.duration_s) <= 1 / 8 and (info.width, info.height) == (160, 120)
    decoded = np.concatenate([chunk.frames for chunk in read_video_frames(path, fps=2, size=None)])
    rendered = np.stack(list(render_scene(scene, 8)))[2::4]  # frame covering (k + 0.5) / 2 s at 8 fps
    assert decoded.shape == rendered.shape
    assert np.abs(decoded.astype(np.int16) - rendered).mean() < 3.0


def test_grows_survives_encoding(tmp_path):
    scene = one_shape_scene("grows", kind="square", color="yellow", texture=12.0)
    path = write_video(tmp_path / "grows.mp4", scene, fps=8)
    frames = np.concatenate([chunk.frames for chunk in read_video_frames(path, fps=1, size=None)])  # t = 0.5 .. 9.5 s
    area = mask_of(frames, COLORS["yellow"]).sum(axis=(1, 2))
    assert area[9] / area[0] == pytest.approx(4.0, rel=0.15)


def test_render_dataset_layout_and_annotations(tmp_path):
    out = render_dataset(tmp_path / "demo", num_train=3, num_val=1, num_test=1, seed=5, fps=4, progress=False)
    scenes = json.loads((out / "scenes.json").read_text())
    ids = {}
    for split, count in (("train", 3), ("val", 1), ("test", 1)):
        entries = json.loads((out / f"{split}.json").read_text())
        assert len(entries) == count
        ids[split] = set(entries)
        annotations, report = load_annotations(out / f"{split}.json")
        assert report.num_dropped == 0 and report.num_clamped == 0
        assert len(annotations) == sum(len(e["sentences"]) for e in entries.values())
        for video_id, entry in entries.items():
            assert set(entry) == {"duration", "timestamps", "sentences"}
            assert entry["duration"] == pytest.approx(probe_video(out / "videos" / f"{video_id}.mp4").duration_s)
            assert entry["duration"] == pytest.approx(scenes[video_id]["duration_s"], abs=0.25)
            queried = [e for e in scenes[video_id]["events"] if e["queried"]]
            assert entry["sentences"] == [e["sentence"] for e in queried]
            assert entry["timestamps"] == [[e["start_s"], e["end_s"]] for e in queried]
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert len(list((out / "videos").glob("*.mp4"))) == 5

    # Video i of a split depends on (seed, split, i) only.
    again = render_dataset(tmp_path / "again", num_train=1, num_val=0, num_test=0, seed=5, fps=4, progress=False)
    first = json.loads((again / "train.json").read_text())
    assert first == {"train_00000": json.loads((out / "train.json").read_text())["train_00000"]}


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "render_demo_videos.py"), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)


def test_tool_renders_and_rejects_bad_arguments(tmp_path):
    done = run_tool("--out", str(tmp_path / "d"), "--num-train", "1", "--num-val", "1", "--num-test", "0",
                    "--seed", "2", "--fps", "4", "--quiet")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "d" / "videos").iterdir()) == ["train_00000.mp4", "val_00000.mp4"]
    for bad in (["--num-train", "-1"], ["--seed", "-3"], ["--fps", "0"], ["--num-val", "many"], ["--bogus"]):
        failed = run_tool("--out", str(tmp_path / "e"), *bad)
        assert failed.returncode == 2, bad
        assert len(failed.stderr.strip().splitlines()) == 1 and "error" in failed.stderr
    assert run_tool().returncode == 2  # --out is required
    assert not (tmp_path / "e").exists()
