"""The synthetic benchmark: deterministic, in the public layouts, distributed like the real data,
and a grounding problem (similar events in one video, sentences naming action and object, features
that carry the queried event where it is annotated)."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from g2l.synthetic import benchmark as synthetic
from g2l.synthetic.benchmark import ACTIONS, OBJECTS, PRESETS, SPLITS, generate_synthetic, plan_video
from g2l.synthetic.plan import sample_moment
from g2l.synthetic.real_stats import FINE_QUANTILE_LEVELS, QUANTILE_LEVELS, RECORDED, SOURCES, compute_real_statistics

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {"num_train": 5, "num_val": 2, "num_test": 3}
TINY_TACOS = {"num_train": 2, "num_val": 1, "num_test": 1}


def _tiny(preset: str) -> dict:
    return TINY_TACOS if preset == "tacos" else TINY


@pytest.fixture(scope="module")
def charades_runs(tmp_path_factory) -> dict[str, Path]:
    """Two runs with seed 0 (into different folders) and one with seed 1."""
    root = tmp_path_factory.mktemp("synthetic")
    return {name: generate_synthetic(root / name, "charades", seed, progress=False, **TINY)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))}


def _read_features(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path / "features.hdf5", "r") as store:
        return {video_id: store[video_id][()] for video_id in store}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_files(charades_runs):
    a, b = charades_runs["a"], charades_runs["b"]
    for name in ("train.json", "val.json", "test.json", "meta.json"):
        assert _digest(a / name) == _digest(b / name), name
    features_a, features_b = _read_features(a), _read_features(b)
    assert features_a.keys() == features_b.keys()
    for video_id in features_a:
        np.testing.assert_array_equal(features_a[video_id], features_b[video_id])
    assert _digest(a / "features.hdf5") == _digest(b / "features.hdf5")
    assert not list(a.glob(".*.tmp")), "temporary files left behind"


def test_different_seeds_differ(charades_runs):
    a, c = charades_runs["a"], charades_runs["c"]
    assert (a / "train.json").read_text() != (c / "train.json").read_text()
    features_a, features_c = _read_features(a), _read_features(c)
    video_id = next(iter(features_a))
    rows_a, rows_c = features_a[video_id], features_c[video_id]
    assert rows_a.shape != rows_c.shape or not np.allclose(rows_a, rows_c)


def test_video_does_not_depend_on_split_size():
    assert plan_video("charades", 3, "train", 4) == plan_video("charades", 3, "train", 4)
    assert plan_video("charades", 3, "train", 4) != plan_video("charades", 3, "train", 5)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_public_layout(tmp_path, preset):
    out = generate_synthetic(tmp_path / preset, preset, 0, progress=False, **_tiny(preset))
    config = PRESETS[preset]
    split_ids = {}
    for split in SPLITS:
        entries = json.loads((out / f"{split}.json").read_text())
        assert len(entries) == _tiny(preset)[f"num_{split}"]
        split_ids[split] = set(entries)
        for video_id, entry in entries.items():
            assert set(entry) == {"duration", "timestamps", "sentences"}
            assert len(entry["timestamps"]) == len(entry["sentences"]) >= 1
            for (start_s, end_s), sentence in zip(entry["timestamps"], entry["sentences"]):
                assert 0.0 <= start_s < end_s <= entry["duration"], (video_id, start_s, end_s)
                assert sentence.strip()
    assert not split_ids["train"] & split_ids["val"]
    assert not split_ids["train"] & split_ids["test"]
    assert not split_ids["val"] & split_ids["test"]

    with h5py.File(out / "features.hdf5", "r") as store:
        assert set(store) == split_ids["train"] | split_ids["val"] | split_ids["test"]
        assert store.attrs["preset"] == preset and store.attrs["seed"] == 0
        assert store.attrs["generator_version"] == synthetic.GENERATOR_VERSION
        for video_id in store:
            rows = store[video_id]
            assert rows.dtype == np.float32 and rows.ndim == 2 and rows.shape[1] == config.feature_dim
            assert config.min_rows <= rows.shape[0] <= config.max_rows
            if config.activation == "relu":
                assert rows[()].min() >= 0.0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["preset"] == preset and meta["splits"]["train"]["videos"] == _tiny(preset)["num_train"]
    assert len(meta["vocabulary"]["actions"]) == len(ACTIONS) and meta["vocabulary"]["objects"] == list(OBJECTS)


def test_feature_key_layout(tmp_path):
    out = generate_synthetic(tmp_path, "activitynet", 0, progress=False, feature_key="c3d_features", **TINY)
    with h5py.File(out / "features.hdf5", "r") as store:
        video_id = next(iter(store))
        assert store[video_id]["c3d_features"].shape[1] == 500


@pytest.mark.parametrize("preset", sorted(SOURCES))
def test_recorded_statistics_match_real_files(shared_data, preset):
    recomputed = compute_real_statistics(shared_data / "annotations" / SOURCES[preset])
    recorded = RECORDED[preset]
    assert (recomputed.num_videos, recomputed.num_queries) == (recorded.num_videos, recorded.num_queries)
    for name in ("duration_quantiles_s", "length_quantiles", "start_quantiles", "relative_start_quantiles",
                 "queries_per_video_quantiles"):
        np.testing.assert_allclose(getattr(recomputed, name), getattr(recorded, name), rtol=0, atol=5e-4, err_msg=name)
    assert recomputed.source == recorded.source == SOURCES[preset]
    assert recomputed.queries_per_video_mean == pytest.approx(recorded.queries_per_video_mean, abs=5e-4)


def _assert_follows(samples: np.ndarray, quantiles, tolerance: float, what: str, levels=QUANTILE_LEVELS) -> None:
    """KS-style check at the table's knots: the empirical CDF just below and at each recorded
    quantile brackets its level, within ``tolerance``."""
    samples = np.sort(np.asarray(samples))
    assert len(levels) == len(quantiles)
    for level, value in zip(levels, quantiles):
        below = np.searchsorted(samples, value - 1e-9, side="left") / len(samples)
        at_or_below = np.searchsorted(samples, value + 1e-9, side="right") / len(samples)
        assert below - tolerance <= level <= at_or_below + tolerance, (what, level, value, below, at_or_below)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sampled_moments_follow_recorded_distribution(preset):
    stats = RECORDED[preset]
    start, length = sample_moment(np.random.default_rng(0), stats, 4000)
    assert np.all(start >= 0) and np.all(start + length <= 1 + 1e-12)
    _assert_follows(length, stats.length_quantiles, 0.03, "length")
    _assert_follows(start, stats.start_quantiles, 0.05, "start")  # matched through the (length, position) model


@pytest.mark.parametrize("preset", ["charades", "activitynet"])
def test_planned_videos_follow_recorded_distribution(preset):
    stats = RECORDED[preset]
    videos = [plan_video(preset, 0, "train", i) for i in range(800)]
    _assert_follows([v.duration_s for v in videos], stats.duration_quantiles_s, 0.05, "duration", FINE_QUANTILE_LEVELS)
    counts = np.array([len(v.queries) for v in videos])
    assert counts.mean() == pytest.approx(stats.queries_per_video_mean, rel=0.06)
    lengths, starts = [], []
    for video in videos:
        for query in video.queries:
            event = video.events[query.event_idx]
            lengths.append((event.end_s - event.start_s) / video.duration_s)
            starts.append(event.start_s / video.duration_s)
    assert len(lengths) > 1500
    _assert_follows(lengths, stats.length_quantiles, 0.05, "query length")
    _assert_follows(starts, stats.start_quantiles, 0.06, "query start")


def test_tacos_has_many_queries_per_video():
    videos = [plan_video("tacos", 0, "train", i) for i in range(20)]
    counts = np.array([len(v.queries) for v in videos])
    assert 90 <= counts.mean() <= 170
    assert all(len({q.event_idx for q in v.queries}) >= 8 for v in videos)


def test_sentences_name_the_event():
    for preset in PRESETS:
        for i in range(20):
            video = plan_video(preset, 0, "test", i)
            for query in video.queries:
                event = video.events[query.event_idx]
                assert event.queried
                words = " " + query.sentence.strip().lower().rstrip(".") + " "
                action = ACTIONS[event.action_idx]
                forms = (action.third_person, action.progressive, action.past)
                assert any(f" {form} " in words for form in forms), query
                assert f" {event.object} " in words, query


def test_videos_hold_similar_events_and_distractors():
    videos = [plan_video("charades", 0, "train", i) for i in range(300)]
    with_similar, opposite_pairs, with_distractor = 0, 0, 0
    for video in videos:
        pairs = [(a, b) for n, a in enumerate(video.events) for b in video.events[n + 1:]]
        assert len({(e.action_idx, e.object_idx) for e in video.events}) == len(video.events)
        with_similar += any(a.action_idx == b.action_idx or a.object_idx == b.object_idx for a, b in pairs)
        opposite_pairs += any(a.object_idx == b.object_idx and ACTIONS[a.action_idx].partner == b.action
                              for a, b in pairs)
        with_distractor += any(not e.queried for e in video.events)
    assert with_similar >= 0.7 * len(videos)
    assert opposite_pairs >= 0.2 * len(videos)  # "opens the door" and "closes the door" in one video
    assert with_distractor >= 0.7 * len(videos)
    assert np.mean([len(v.events) for v in videos]) >= 3


def test_features_carry_the_event_where_it_is_annotated(charades_runs):
    """Projecting the L2-normalised rows back to the latent space, the queried event's direction is
    stronger inside its window than outside, for most events (the signal is there)."""
    world = synthetic.build_world("charades", 0)
    back = np.linalg.pinv(world.projection.astype(np.float64))  # (F, K)
    features = _read_features(charades_runs["a"])
    stronger, total = 0, 0
    for i in range(TINY["num_train"]):
        video = plan_video("charades", 0, "train", i)
        rows = features[video.video_id].astype(np.float64)
        alone = synthetic.render_features(world, [video], 0, "charades")[0]
        np.testing.assert_allclose(alone, rows, rtol=1e-5, atol=1e-6)
        latent = (rows / np.linalg.norm(rows, axis=1, keepdims=True)) @ back  # (T, K)
        centres_s = (np.arange(video.num_rows) + 0.5) * video.duration_s / video.num_rows
        for event in video.events:
            inside = (centres_s > event.start_s) & (centres_s < event.end_s)
            if inside.sum() < 2 or (~inside).sum() < 2:
                continue
            direction = world.event_latent(event.action_idx, event.object_idx)
            score = latent @ direction
            stronger += score[inside].mean() > score[~inside].mean()
            total += 1
    assert total >= 5 and stronger >= 0.8 * total


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "make_synthetic.py"), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT)


def test_cli_writes_files(tmp_path):
    result = _cli("--out", str(tmp_path / "out"), "--preset", "activitynet", "--seed", "2",
                  "--num-train", "3", "--num-val", "1", "--num-test", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    for name in ("train.json", "val.json", "test.json", "features.hdf5", "meta.json"):
        assert (tmp_path / "out" / name).is_file()
    said = result.stdout.strip().splitlines()  # the size first, before anything is written
    assert said[0].startswith(f"writing activitynet (seed 2) to {tmp_path / 'out'}: about ") and said[0].endswith(" kB")
    assert said[-1].startswith("wrote activitynet (seed 2)")


@pytest.mark.parametrize("args", [
    ["--preset", "kinetics", "--seed", "0"],
    ["--preset", "charades", "--seed", "-1"],
    ["--preset", "charades", "--seed", "zero"],
    ["--preset", "charades", "--seed", "0", "--num-train", "0"],
    ["--preset", "charades", "--seed", "0", "--size", "huge"],
    ["--preset", "charades"],
])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, args):
    result = _cli("--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_output_that_is_a_file_exits_2(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = _cli("--out", str(target), "--preset", "charades", "--seed", "0", "--num-train", "1", "--quiet")
    assert result.returncode == 2 and "not a folder" in result.stderr


@pytest.mark.parametrize("preset, feature_key, counts", [
    ("charades", None, TINY), ("activitynet", None, {"num_train": 40, "num_val": 5, "num_test": 5}),
    ("activitynet", "c3d_features", TINY), ("tacos", None, TINY_TACOS),
])
def test_the_size_announced_before_writing_is_what_is_written(tmp_path, preset, feature_key, counts):
    heard = []
    out = generate_synthetic(tmp_path / "out", preset, 0, progress=False, feature_key=feature_key,
                             on_estimate=heard.append, **counts)
    written = sum(path.stat().st_size for path in out.iterdir())
    assert len(heard) == 1 and heard[0] == pytest.approx(written, rel=0.01)
    assert abs(heard[0] - written) < 16 * 1024  # all but HDF5's own bytes is counted exactly


def test_the_default_charades_preset_is_announced_as_the_1_2_gb_it_writes():
    plans = {split: [plan_video("charades", 0, split, i, 0.0) for i in range(n)]
             for split, n in synthetic.split_sizes("charades").items()}
    assert synthetic.format_bytes(synthetic.features_bytes(4096, plans, None)) == "1.2 GB"  # 72,100 rows of 4096 floats
    assert [synthetic.format_bytes(n) for n in (999, 1000, 2_345_678, 10**9)] == ["999 bytes", "1.0 kB", "2.3 MB", "1.0 GB"]


def test_a_disk_without_room_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    usage = synthetic.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(synthetic.shutil, "disk_usage", lambda path: usage._replace(free=50 * 2**20))
    with pytest.raises(synthetic.G2LError, match=r"the charades benchmark needs about .* MB and the disk of .* has "
                                                 r"52\.4 MB free; free some space"):
        generate_synthetic(tmp_path / "new" / "out", "charades", 0, progress=False, **TINY)
    assert not (tmp_path / "new").exists()
