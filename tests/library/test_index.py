"""Library search (g2l/library, g2l-index, g2l-search): search results equal scoring every video with
``Grounder.ground``; build/add/remove/verify round trips; an index of another model, a damaged or
newer one, links and planted temporaries refused with a sentence; one writer at a time; a kill -9
during ``add`` leaves an index that opens and resumes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from g2l.assets import demo_checkpoint
from g2l.cli import index_main, search_main
from g2l.inference import Grounder
from g2l.library import IndexedVideo, VideoIndex, VideoIndexError
from g2l.library.exact import Block, ExactSearch
from g2l.models.grounding import score_cells
from tests.video_utils import write_test_video

REPO = Path(__file__).resolve().parents[2]
QUERIES = ["the red circle grows.", "a blue square leaves.", "the white triangle turns green."]


@pytest.fixture(scope="module")
def grounder():
    return Grounder.from_pretrained(str(demo_checkpoint()), device="cpu")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three short clips of different lengths (the demo model samples 1 frame/s)."""
    folder = tmp_path_factory.mktemp("videos")
    for name, seconds in (("a", 6.0), ("b", 9.0), ("c", 4.0)):
        (folder / "sub").mkdir(exist_ok=True)
        write_test_video(folder / ("sub" if name == "c" else "") / f"{name}.mp4", duration_s=seconds, fps=5.0,
                         size=(64, 48))
    return folder


def random_video(grounder, seed: int, duration_s: float):
    features = np.random.default_rng(seed).normal(size=(int(duration_s), grounder.cfg.data.feature_dim))
    return grounder.encode_features(features.astype(np.float32), duration_s, name=f"v{seed}")


def embedded(grounder, seeds, durations=None, window_s=None):
    """``add_embeddings`` entries for random videos, named v<seed>.mp4."""
    durations = durations or [12.0 + 7 * i for i in range(len(seeds))]
    entries = []
    for seed, duration_s in zip(seeds, durations):
        video = random_video(grounder, seed, duration_s)
        entries.append((IndexedVideo(f"v{seed}.mp4", f"/nowhere/v{seed}.mp4", None, duration_s, 0),
                        *grounder.moment_embeddings(video, window_s)))
    return entries


def brute_force(grounder, videos: dict, query: str, top_k: int, per_video=None, window_s=None):
    """Every video grounded on its own with every candidate kept, merged by score."""
    every = []
    for name, video in videos.items():
        moments = grounder.ground(video, [query], top_k=10_000, window_s=window_s)[0].moments
        every += [(m.score, name, m.start_s, m.end_s) for m in moments[:per_video or len(moments)]]
    every.sort(key=lambda m: -m[0])
    return every[:top_k]


def test_moment_and_query_embeddings_give_grounds_scores(grounder):
    video = random_video(grounder, 0, 30.0)
    for window_s in (None, 16.0):
        spans, cells_c, cells_u = grounder.moment_embeddings(video, window_s)
        s_c, s_u = grounder.query_embeddings(QUERIES)
        assert cells_c.shape == cells_u.shape and spans.shape == (len(cells_c), 2)
        for q, query in enumerate(QUERIES):
            scores = score_cells(torch.from_numpy(cells_c @ s_c[q]), torch.from_numpy(cells_u @ s_u[q]),
                                 grounder.cfg.eval.score_gamma).numpy()
            for m in grounder.ground(video, [query], top_k=5, window_s=window_s)[0].moments:
                at = np.flatnonzero((spans[:, 0] == np.float32(m.start_s)) & (np.minimum(spans[:, 1], 30.0) == m.end_s))
                assert np.abs(scores[at] - m.score).min() < 1e-5


@pytest.mark.parametrize("dtype,per_video,window_s", [("float32", None, None), ("float32", 2, None),
                                                      ("float32", 1, 16.0), ("float16", None, None)])
def test_search_equals_grounding_every_video(grounder, tmp_path, dtype, per_video, window_s):
    seeds = [1, 2, 3, 4]
    with VideoIndex.create(tmp_path / "index", grounder, dtype=dtype, window_s=window_s) as index:
        index.add_embeddings(embedded(grounder, seeds[:2], [12.0, 19.0], window_s))
        index.add_embeddings(embedded(grounder, seeds[2:], [26.0, 33.0], window_s))
    index = VideoIndex.open(tmp_path / "index", grounder)
    videos = {f"v{s}.mp4": random_video(grounder, s, d) for s, d in zip(seeds, [12.0, 19.0, 26.0, 33.0])}
    results = index.search(grounder, QUERIES, top_k=12, per_video=per_video)
    tolerance = 1e-5 if dtype == "float32" else 5e-3
    for result, query in zip(results, QUERIES):
        expected = brute_force(grounder, videos, query, 12, per_video, window_s)
        got = [(m.score, m.video, m.start_s, m.end_s) for m in result.moments]
        assert len(got) == len(expected) == (12 if per_video is None else 4 * per_video)
        if dtype == "float32":
            assert [g[1:] for g in got] == [e[1:] for e in expected]
        assert np.allclose([g[0] for g in got], [e[0] for e in expected], atol=tolerance)
        assert result.match is None  # the demo model has no match threshold
        if per_video:
            assert max(sum(g[1] == name for g in got) for name in videos) <= per_video


def test_exact_rank_by_hand():
    """Two videos; NMS within a video only, per-video cap, ties in stored order."""
    spans = np.array([[0, 10], [1, 10], [20, 30], [0, 10], [0, 10]], np.float32)
    block = Block(np.zeros((5, 2), np.float32), np.zeros((5, 2), np.float32), spans, np.array([0, 0, 0, 1, 1]))
    search = ExactSearch([block], gamma=0.5)
    scores = np.array([0.9, 0.8, 0.5, 0.7, 0.7], np.float32)
    # [1, 10] overlaps [0, 10] (IoU 0.9 > 0.5) in video 0: suppressed; video 1's equal spans are suppressed too
    assert search.rank(scores, top_k=5, per_video=None, nms_thresh=0.5) == [0, 3, 2]
    assert search.rank(scores, top_k=5, per_video=1, nms_thresh=0.5) == [0, 3]
    crafted = Block(np.array([[np.nan, 0], [1, 0]], np.float32), np.ones((2, 2), np.float32), spans[:2],
                    np.array([0, 0]))
    scored = ExactSearch([crafted], gamma=0.5).scores(np.array([1, 0], np.float32), np.array([1, 0], np.float32))
    assert scored[0] == -np.inf and scored[1] == pytest.approx(1 / (1 + np.exp(-10)))  # NaN from a crafted shard ranks last


def test_add_remove_round_trip_writes_only_new_shards(grounder, tmp_path):
    folder = tmp_path / "index"
    with VideoIndex.create(folder, grounder) as index:
        index.add_embeddings(embedded(grounder, [1, 2]))
        first = {p.name: p.stat().st_mtime_ns for p in (folder / "shards").iterdir()}
        index.add_embeddings(embedded(grounder, [3]))
        after = {p.name: p.stat().st_mtime_ns for p in (folder / "shards").iterdir()}
        assert {k: after[k] for k in first} == first and len(after) == 2  # the old shard untouched
        removed, missing = index.remove(["v2.mp4", "nope.mp4"])
        assert removed == ["v2.mp4"] and missing == ["nope.mp4"]
        in_memory = index.videos  # kept in memory at each commit: what reading the folder again gives
    index = VideoIndex.open(folder, grounder)
    assert index.videos == in_memory
    assert [v.path for v in index.videos] == ["v3.mp4", "v1.mp4"]  # v1's shard rewritten without v2, after v3's
    assert index.info()["videos"] == 2 and len(list((folder / "shards").iterdir())) == 2
    hits = index.search(grounder, QUERIES[:1], top_k=50)[0].moments
    assert {m.video for m in hits} == {"v1.mp4", "v3.mp4"}
    report = index.verify()
    assert report.unchecked == 2 and not report.damaged


def test_cli_build_search_json_verify_fix(grounder, videos, tmp_path, capsys):
    work = tmp_path / "videos"
    shutil.copytree(videos, work)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# one video\n{work / 'b.mp4'}\n")
    (tmp_path / "garbage.mp4").write_bytes(b"not a video at all" * 100)
    index = tmp_path / "index"
    assert index_main(["build", str(index), str(work / "a.mp4"), str(work / "sub"), f"@{listing}",
                       str(work / "missing.mp4"), str(tmp_path / "garbage.mp4"), "--cache", str(tmp_path / "cache"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {work / 'missing.mp4'}: " in err and f"skipped {tmp_path / 'garbage.mp4'}: " in err
    assert "3 videos added" in err and "2 failed" in err
    assert search_main([str(index), *QUERIES[:2], "--top-k", "4", "--per-video", "1", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["query"] for line in lines] == QUERIES[:2]
    for line in lines:
        assert set(line) == {"query", "match", "moments"} and line["match"] is None and len(line["moments"]) == 3
        assert all(set(m) == {"video", "start", "end", "score"} for m in line["moments"])
        assert len({m["video"] for m in line["moments"]}) == 3
        scores = [m["score"] for m in line["moments"]]
        assert scores == sorted(scores, reverse=True)
    # the same answers as grounding each video (float16 storage: within 5e-3)
    encoded = {str(p): grounder.encode_video(p) for p in (work / "a.mp4", work / "b.mp4", work / "sub" / "c.mp4")}
    expected = brute_force(grounder, encoded, QUERIES[0], 3, per_video=1)
    assert np.allclose([m["score"] for m in lines[0]["moments"]], [e[0] for e in expected], atol=5e-3)
    # add: unchanged videos are skipped; verify finds changed, moved and missing videos; --fix mends them
    assert index_main(["add", str(index), str(work), "--quiet"]) == 0
    assert "0 videos added" in capsys.readouterr().err
    os.rename(work / "a.mp4", work / "a-renamed.mp4")
    (work / "sub" / "c.mp4").unlink()
    write_test_video(work / "b.mp4", duration_s=7.0, fps=5.0, size=(64, 48))
    assert index_main(["verify", str(index)]) == 1
    out = capsys.readouterr().out
    assert f"moved: {work / 'a.mp4'} -> {work / 'a-renamed.mp4'}" in out
    assert f"changed: {work / 'b.mp4'}" in out and f"missing: {work / 'sub' / 'c.mp4'}" in out
    assert index_main(["verify", str(index), "--fix"]) == 0
    capsys.readouterr()
    assert index_main(["verify", str(index)]) == 0
    reopened = VideoIndex.open(index, grounder)
    assert sorted(v.path for v in reopened.videos) == sorted([str(work / "a-renamed.mp4"), str(work / "b.mp4")])
    assert {v.path: v.duration_s for v in reopened.videos}[str(work / "b.mp4")] == pytest.approx(7.0, abs=0.3)
    assert index_main(["remove", str(index), str(work / "b.mp4")]) == 0
    assert index_main(["info", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["videos"] == 1


def test_verify_fix_encodes_the_indexed_file_not_a_namesake_in_the_current_folder(grounder, videos, tmp_path,
                                                                                 monkeypatch, capsys):
    """A video indexed by a relative path, then changed: ``verify --fix`` run from another folder that
    holds another video of that name encodes the indexed file again (by its resolved path), keeps
    the path as indexed, and leaves no stale entry."""
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir(), other.mkdir()
    shutil.copy(videos / "a.mp4", work / "a.mp4")
    shutil.copy(videos / "b.mp4", other / "a.mp4")  # 9 s: a namesake, never indexed
    monkeypatch.chdir(work)
    assert index_main(["build", str(tmp_path / "index"), "a.mp4", "--quiet"]) == 0
    write_test_video(work / "a.mp4", duration_s=7.0, fps=5.0, size=(64, 48))
    monkeypatch.chdir(other)
    assert index_main(["verify", str(tmp_path / "index"), "--fix"]) == 0
    assert "fixed: encoded a.mp4 again" in capsys.readouterr().out
    assert index_main(["verify", str(tmp_path / "index")]) == 0
    [video] = VideoIndex.open(tmp_path / "index", grounder).videos
    assert (video.path, video.resolved) == ("a.mp4", str(work / "a.mp4"))
    assert video.duration_s == pytest.approx(7.0, abs=0.3)


def test_remove_and_verify_fix_touch_only_the_meant_one_of_two_namesakes(grounder, videos, tmp_path, monkeypatch,
                                                                         capsys):
    """``a.mp4`` indexed from two folders is two entries: ``remove a.mp4`` in one folder removes that
    folder's; the one deleted is dropped by ``verify --fix``, the other kept."""
    for name, source in (("x", "a.mp4"), ("y", "b.mp4")):
        (tmp_path / name).mkdir()
        shutil.copy(videos / source, tmp_path / name / "a.mp4")
        monkeypatch.chdir(tmp_path / name)
        assert index_main(["build", str(tmp_path / "index"), "a.mp4", "--quiet"]) == 0
    shutil.copytree(tmp_path / "index", tmp_path / "copy")
    assert index_main(["remove", str(tmp_path / "copy"), "a.mp4"]) == 0  # run in y: y's file only
    assert [v.resolved for v in VideoIndex.open(tmp_path / "copy", grounder).videos] == [str(tmp_path / "x" / "a.mp4")]
    (tmp_path / "y" / "a.mp4").unlink()
    assert index_main(["verify", str(tmp_path / "index"), "--fix"]) == 0
    assert "fixed: dropped a.mp4" in capsys.readouterr().out
    [video] = VideoIndex.open(tmp_path / "index", grounder).videos
    assert (video.path, video.resolved) == ("a.mp4", str(tmp_path / "x" / "a.mp4"))


def test_build_from_a_splits_features(grounder, tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    annotations = {}
    with h5py.File(tmp_path / "features.hdf5", "w") as h5:
        for v in range(3):
            h5[f"vid{v}"] = rng.normal(size=(20, 1280)).astype(np.float32)
            annotations[f"vid{v}"] = {"duration": 20.0 + v, "timestamps": [[1.0, 5.0]], "sentences": ["a dog runs."]}
    (tmp_path / "test.json").write_text(json.dumps(annotations))
    (tmp_path / "data.yaml").write_text(f"_base_: {REPO / 'configs' / 'demo.yaml'}\ndata:\n  test_annotations: "
                                        f"{tmp_path / 'test.json'}\n  features: {tmp_path / 'features.hdf5'}\n")
    index = tmp_path / "index"
    assert index_main(["build", str(index), "--checkpoint", str(demo_checkpoint()), "--config",
                       str(tmp_path / "data.yaml"), "--split", "test", "--dtype", "float32", "--quiet"]) == 0
    opened = VideoIndex.open(index, grounder)
    assert sorted(v.path for v in opened.videos) == ["vid0", "vid1", "vid2"]
    from g2l.data.features import VideoFeatures

    features = VideoFeatures(str(tmp_path / "features.hdf5"), "", 32)
    videos = {f"vid{v}": grounder.encode_features(features.load(f"vid{v}"), 20.0 + v) for v in range(3)}
    got = opened.search(grounder, ["a dog runs."], top_k=5)[0].moments
    expected = brute_force(grounder, videos, "a dog runs.", 5)
    assert [(m.video, m.start_s) for m in got] == [(e[1], e[2]) for e in expected]
    assert np.allclose([m.score for m in got], [e[0] for e in expected], atol=1e-5)


def _tiny_index(grounder, folder: Path) -> Path:
    with VideoIndex.create(folder, grounder, dtype="float32") as index:
        index.add_embeddings(embedded(grounder, [1, 2]))
    return folder


def _edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "index.json").read_text())
    change(manifest)
    (folder / "index.json").write_text(json.dumps(manifest))


def _shard(folder: Path) -> Path:
    return next((folder / "shards").iterdir())


DAMAGE = {
    "newer format": (lambda f: _edit_manifest(f, lambda m: m.update(version=99)), "newer g2l"),
    "not json": (lambda f: (f / "index.json").write_text("{oops"), "is damaged"),
    "not an index": (lambda f: (f / "index.json").write_text("{}"), "is not a g2l index"),
    "shard count lies": (lambda f: _edit_manifest(f, lambda m: m["shards"][0].update(cells=7)), "does not agree"),
    "shard missing": (lambda f: shutil.rmtree(_shard(f)), "missing"),
    "array shape": (lambda f: np.save(_shard(f) / "cells_c.npy", np.zeros((3, 128), np.float32)), "holds"),
    "array dtype": (lambda f: np.save(_shard(f) / "spans.npy", np.load(_shard(f) / "spans.npy").astype(np.float64)),
                    "holds"),
    "array truncated": (lambda f: os.truncate(_shard(f) / "cells_u.npy", 1000), "bytes"),
    "videos.json lies": (lambda f: (_shard(f) / "videos.json").write_text("[]"), "does not agree"),
    "manifest link": (lambda f: (os.rename(f / "index.json", f / "real.json"),
                                 os.symlink(f / "real.json", f / "index.json")), "link"),
    "shard file link": (lambda f: (os.rename(_shard(f) / "spans.npy", f / "spans.npy"),
                                   os.symlink(f / "spans.npy", _shard(f) / "spans.npy")), "cannot be opened"),
    "videos.json link": (lambda f: (os.rename(_shard(f) / "videos.json", f / "videos.json"),
                                    os.symlink(f / "videos.json", _shard(f) / "videos.json")), "is a link"),
    "planted link": (lambda f: os.symlink("/etc/passwd", f / "shards" / ".00000009.1.tmp"), "link"),
    "spans beyond the video": (lambda f: _edit_spans(f, lambda s: s + 7.5e8), "outside their video"),
    "spans not finite": (lambda f: _edit_spans(f, lambda s: s * np.nan), "outside their video"),
    "spans reversed": (lambda f: _edit_spans(f, lambda s: s[:, ::-1]), "outside their video"),
    "width edited": (lambda f: (_edit_manifest(f, lambda m: m["settings"].update(dim=64)),
                                *(np.save(_shard(f) / name, np.ascontiguousarray(np.load(_shard(f) / name)[:, :64]))
                                  for name in ("cells_c.npy", "cells_u.npy"))), "this model's have 128"),
    "hash of another file": (lambda f: _edit_manifest(f, lambda m: m["shards"][0]["sha256"].update(
        {"/dev/zero": "0" * 64})), "not laid out"),
}


def _edit_spans(folder: Path, change) -> None:
    spans = np.load(_shard(folder) / "spans.npy")
    np.save(_shard(folder) / "spans.npy", np.ascontiguousarray(change(spans), np.float32))


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_index_is_refused_in_a_sentence(grounder, tmp_path, case, capsys):
    folder = _tiny_index(grounder, tmp_path / "index")
    damage, words = DAMAGE[case]
    damage(folder)
    with pytest.raises(VideoIndexError, match=words) as caught:
        VideoIndex.open(folder, grounder).search(grounder, QUERIES[:1])
    assert "\n" not in str(caught.value)
    assert search_main([str(folder), QUERIES[0]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_other_model_refused(grounder, tmp_path):
    folder = _tiny_index(grounder, tmp_path / "index")
    _edit_manifest(folder, lambda m: m["model"].update(weights_sha256="0" * 64))
    with pytest.raises(VideoIndexError, match="built with another model"):
        VideoIndex.open(folder, grounder)
    with pytest.raises(VideoIndexError, match="built with another model"):
        VideoIndex.open(folder).search(grounder, QUERIES[:1])


def test_verify_follows_no_link_and_waits_on_no_fifo(grounder, tmp_path):
    """A shard file that is a link (to an exact copy: the hash would match through it), a FIFO (a
    read would wait forever) or missing is reported damaged, never followed, read or a traceback."""
    folder = _tiny_index(grounder, tmp_path / "index")
    shard = _shard(folder)
    shutil.copy(shard / "cells_c.npy", tmp_path / "copy.npy")
    (shard / "cells_c.npy").unlink()
    os.symlink(tmp_path / "copy.npy", shard / "cells_c.npy")
    os.unlink(shard / "cells_u.npy")
    os.mkfifo(shard / "cells_u.npy")
    os.unlink(shard / "spans.npy")
    damaged = VideoIndex.open(folder, grounder).verify().damaged
    assert sorted(damaged) == [f"shards/{shard.name}/{name}" for name in ("cells_c.npy", "cells_u.npy", "spans.npy")]


def test_a_shard_file_swapped_after_its_check_is_not_mapped(grounder, tmp_path, monkeypatch):
    """The arrays are mapped from the descriptor whose header and size were checked: a file swapped
    for a link to a shorter one right after the check (a race) changes nothing."""
    from g2l.library import store

    folder = _tiny_index(grounder, tmp_path / "index")
    expected = VideoIndex.open(folder, grounder).search(grounder, QUERIES[:1])[0].moments
    (tmp_path / "short.npy").write_bytes(b"\x93NUMPY")
    read_header = np.lib.format.read_array_header_1_0

    def swap_after_reading(handle, **kwargs):
        header = read_header(handle, **kwargs)
        name = Path(handle.name if isinstance(handle.name, str) else os.readlink(f"/proc/self/fd/{handle.name}"))
        os.replace(name, tmp_path / f"moved-{name.name}")
        os.symlink(tmp_path / "short.npy", name)
        return header

    monkeypatch.setattr(store.np.lib.format, "read_array_header_1_0", swap_after_reading)
    got = VideoIndex.open(folder, grounder).search(grounder, QUERIES[:1])[0].moments
    assert [(m.video, m.start_s, m.end_s, m.score) for m in got] == [(m.video, m.start_s, m.end_s, m.score)
                                                                     for m in expected]
    assert all((_shard(folder) / name).is_symlink() for name in ("spans.npy", "cells_c.npy", "cells_u.npy"))


@pytest.mark.parametrize("place", [".", "shards", "shards/00000001", "shards/00000001/cells_c.npy"])
def test_an_index_others_can_write_is_used_with_a_warning(grounder, tmp_path, place, recwarn):
    folder = _tiny_index(grounder, tmp_path / "index")
    VideoIndex.open(folder, grounder)
    assert not [w for w in recwarn if "can be changed by others" in str(w.message)]
    os.chmod(folder / place, os.stat(folder / place).st_mode | 0o002)
    with pytest.warns(UserWarning, match="can be changed by others") as caught:
        VideoIndex.open(folder, grounder).search(grounder, QUERIES[:1])
    assert str(folder / place).rstrip("/.") in str(caught[0].message)


def test_one_writer_at_a_time_and_readers_see_whole_updates(grounder, tmp_path):
    folder = _tiny_index(grounder, tmp_path / "index")
    reader = VideoIndex.open(folder, grounder)
    with VideoIndex.open(folder, grounder, write=True) as writer:
        with pytest.raises(VideoIndexError, match="being changed by another"):
            VideoIndex.open(folder, grounder, write=True)
        writer.remove(["v1.mp4"])
        writer.add_embeddings(embedded(grounder, [5]))
        assert {v.path for v in VideoIndex.open(folder, grounder).videos} == {"v2.mp4", "v5.mp4"}
    with pytest.raises(VideoIndexError, match="opened for reading"):
        reader.remove(["v2.mp4"])


def test_cli_errors_are_one_sentence(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        (search_main, [str(tmp_path / "empty"), "a query"], "is not a g2l index"),
        (search_main, [str(tmp_path / "file"), "a query"], "is not a folder"),
        (search_main, [str(tmp_path / "empty"), "   "], "non-empty sentence"),
        (search_main, [str(tmp_path / "empty"), "a query", "--top-k", "0"], "--top-k"),
        (index_main, ["build", str(tmp_path / "new")], "pass videos"),
        (index_main, ["build", str(tmp_path / "new"), "--split", "test"], "--checkpoint, --config and --split"),
        (index_main, ["build", str(tmp_path / "new"), f"@{tmp_path / 'nolist.txt'}"], "does not exist"),
        (index_main, ["info", str(tmp_path / "empty")], "is not a g2l index"),
    ]
    for main, argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1, err


def test_kill_during_add_leaves_an_index_that_opens_and_resumes(grounder, videos, tmp_path):
    """``g2l-index build`` of three videos killed (SIGKILL) as the second shard is renamed into place
    (one video a shard): the index opens with the first video, and the same command resumes."""
    index = tmp_path / "index"
    script = ("import sys, g2l.io.atomic\n"
              "from tests.crash_points import crash_point\n"
              "g2l.io.atomic.kill_point = crash_point\n"
              "from g2l.cli import index_main\n"
              "sys.exit(index_main(sys.argv[1:]))\n")
    argv = ["build", str(index), str(videos / "a.mp4"), str(videos / "b.mp4"), str(videos / "sub" / "c.mp4"),
            "--quiet", "--commit-every", "1"]
    env = dict(os.environ, G2L_TEST_CRASH_AT="shard-written:00000002", PYTHONPATH=str(REPO))
    killed = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert any(p.name.endswith(".tmp") for p in (index / "shards").iterdir())  # the kill left its temporary
    opened = VideoIndex.open(index, grounder)
    assert [v.path for v in opened.videos] == [str(videos / "a.mp4")]
    env.pop("G2L_TEST_CRASH_AT")
    resumed = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 videos added" in resumed.stderr and "1 already indexed" in resumed.stderr
    assert not any(p.name.endswith(".tmp") for p in (index / "shards").iterdir())
    assert len(VideoIndex.open(index, grounder).videos) == 3


def test_a_failed_write_leaves_the_index_as_it_was(grounder, tmp_path, monkeypatch):
    folder = _tiny_index(grounder, tmp_path / "index")
    entries = embedded(grounder, [7])

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with VideoIndex.open(folder, grounder, write=True) as index:
        with monkeypatch.context() as patch:
            patch.setattr(np, "save", disk_full)
            with pytest.raises(VideoIndexError, match="could not be written .No space left on device.; it is as it was"):
                index.add_embeddings(entries)
    assert any(p.name.endswith(".tmp") for p in (folder / "shards").iterdir())
    assert sorted(v.path for v in VideoIndex.open(folder, grounder).videos) == ["v1.mp4", "v2.mp4"]
    with VideoIndex.open(folder, grounder, write=True) as index:  # the next writer clears the temporary
        index.add_embeddings(entries)
    assert not any(p.name.endswith(".tmp") for p in (folder / "shards").iterdir())
    assert len(VideoIndex.open(folder, grounder).videos) == 3


def test_planted_temporaries_are_ignored_by_readers_and_removed_by_writers(grounder, tmp_path):
    folder = _tiny_index(grounder, tmp_path / "index")
    planted = [folder / ".index.json.999999999.tmp", folder / "shards" / ".00000005.999999999.tmp"]
    planted[0].write_text('{"format": "g2l video index", "version": 1}')
    planted[1].mkdir()
    np.save(planted[1] / "cells_c.npy", np.ones((3, 128), np.float32))
    orphan = folder / "shards" / "00000042"  # a shard no manifest lists, as a killed writer leaves one
    orphan.mkdir()
    assert sorted(v.path for v in VideoIndex.open(folder, grounder).videos) == ["v1.mp4", "v2.mp4"]
    with VideoIndex.open(folder, grounder, write=True):
        pass
    assert not any(p.exists() for p in [*planted, orphan])
    assert sorted(v.path for v in VideoIndex.open(folder, grounder).videos) == ["v1.mp4", "v2.mp4"]


def test_match_is_the_best_score_against_the_models_threshold(grounder, tmp_path, monkeypatch, capsys):
    folder = _tiny_index(grounder, tmp_path / "index")
    best = VideoIndex.open(folder, grounder).search(grounder, QUERIES[:1])[0].moments[0].score
    for threshold, expected in ((best, True), (best + 1e-3, False)):
        monkeypatch.setattr(grounder, "match", {"threshold": threshold, "auroc": 0.9})
        assert VideoIndex.open(folder, grounder).search(grounder, QUERIES[:1])[0].match is expected
    monkeypatch.setattr(grounder, "match", {"threshold": 0.0, "auroc": 0.55})  # a fit that cannot tell: no decision
    assert VideoIndex.open(folder, grounder).search(grounder, QUERIES[:1])[0].match is None


def test_paths_are_printed_without_their_control_characters():
    # A path written into an index (videos.json is data anyone with write access may have edited)
    # must not reach the terminal as an escape sequence.
    from g2l.cli.library import printable

    assert printable("clips/\x1b]0;pwned\x07a.mp4") == "clips/\\x1b]0;pwned\\x07a.mp4"
    assert printable("día/b.mp4") == "día/b.mp4"
