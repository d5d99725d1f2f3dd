"""Approximate library search (g2l/library/approximate.py): FAISS candidates re-scored exactly and
ranked by exact search's code. With candidates covering every moment it IS exact search; on a small
clustered library its recall@10 against exact search is high; its stored FAISS file is believed only
after its SHA-256 matches the manifest (a flipped byte, a foreign file, a missing one: one sentence,
or exact search with that sentence as a warning where the user did not ask for approximate)."""

import json
import re
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from g2l.assets import demo_checkpoint
from g2l.cli import index_main, search_main
from g2l.inference import Grounder
from g2l.library import IndexedVideo, VideoIndex, VideoIndexError
from g2l.library import approximate as ann
from g2l.library import approximate as approximate_module
from g2l.library.exact import ExactSearch

faiss = pytest.importorskip("faiss")
QUERIES = ["the red circle grows.", "a blue square leaves."]


@pytest.fixture(scope="module")
def grounder():
    return Grounder.from_pretrained(str(demo_checkpoint()), device="cpu")


def normalised(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered_entries(grounder, videos: int, *, first: int = 0, seed: int = 0, centres: int = 20):
    """Videos whose moments lie around a few centres (as real moment features cluster), the IoU
    features correlated with the contrast ones; spans as the demo model's 136 moments of 30 s."""
    rng = np.random.default_rng(seed)
    spans = grounder.moment_embeddings(grounder.encode_features(np.ones((30, 1280), np.float32), 30.0))[0]
    dim = grounder.cfg.model.joint_dim
    middle = np.random.default_rng(99).standard_normal((centres, dim))
    entries = []
    for v in range(first, first + videos):
        c = normalised(middle[rng.integers(centres, size=len(spans))] + 0.8 * rng.standard_normal((len(spans), dim)))
        u = normalised(c + 0.8 * rng.standard_normal((len(spans), dim)) / np.sqrt(dim) * 4)
        entries.append((IndexedVideo(f"v{v}.mp4", f"/nowhere/v{v}.mp4", None, 30.0, 0), spans, c, u))
    return entries


def query_vectors(grounder, count: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    dim = grounder.cfg.model.joint_dim
    middle = np.random.default_rng(99).standard_normal((20, dim))
    c = normalised(middle[rng.integers(20, size=count)] + 0.8 * rng.standard_normal((count, dim)))
    return c, normalised(c + 0.5 * rng.standard_normal((count, dim)) / np.sqrt(dim) * 4)


@pytest.fixture(scope="module")
def library(grounder, tmp_path_factory):
    """40 clustered videos (5,440 moments) with their FAISS index."""
    folder = tmp_path_factory.mktemp("lib") / "index"
    with VideoIndex.create(folder, grounder) as index:
        index.add_embeddings(clustered_entries(grounder, 40))
        record = index.build_approximate()
    assert record["factory"].endswith(",Flat") and record["moments"] == 40 * 136
    return folder


def copy_of(library: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(library, tmp_path / "copy"))


@pytest.mark.parametrize("per_video", [None, 1])
def test_with_every_moment_a_candidate_it_is_exact_search(grounder, library, per_video):
    index = VideoIndex.open(library, grounder)
    blocks = index._blocks()
    exact = ExactSearch(blocks, gamma=grounder.cfg.eval.score_gamma)
    nlist = faiss.extract_index_ivf(ann.load_faiss_index(library, index.manifest)).nlist
    approximate = ann.ApproximateSearch(blocks, ann.load_faiss_index(library, index.manifest),
                                        gamma=grounder.cfg.eval.score_gamma, candidates=len(exact), nprobe=nlist)
    for s_c, s_u in zip(*query_vectors(grounder, 5)):
        want = exact.rank(exact.scores(s_c, s_u), top_k=10, per_video=per_video, nms_thresh=0.5)
        scores = approximate.scores(s_c, s_u)
        assert approximate.rank(scores, top_k=10, per_video=per_video, nms_thresh=0.5) == want
        np.testing.assert_array_equal(scores[want], exact.scores(s_c, s_u)[want])  # the same exact scores


def test_search_api_and_cli_give_exact_results_when_candidates_cover_all(grounder, library, monkeypatch, capsys):
    monkeypatch.setattr(ann, "NPROBE", 10_000)  # every list: every moment is a candidate
    index = VideoIndex.open(library, grounder)
    exact = index.search(grounder, QUERIES, approximate=False)
    assert index.search(grounder, QUERIES, approximate=True) == exact
    assert search_main([str(library), *QUERIES, "--approximate", "--json"]) == 0
    approximate_lines = capsys.readouterr().out
    assert search_main([str(library), *QUERIES, "--exact", "--json"]) == 0
    assert capsys.readouterr().out == approximate_lines
    assert [m["video"] for m in json.loads(approximate_lines.splitlines()[0])["moments"]] == \
        [m.video for m in exact[0].moments]


def test_recall_on_a_small_clustered_library(grounder, library):
    index = VideoIndex.open(library, grounder)
    blocks = index._blocks()
    exact = ExactSearch(blocks, gamma=grounder.cfg.eval.score_gamma)
    approximate = ann.ApproximateSearch(blocks, ann.load_faiss_index(library, index.manifest),
                                        gamma=grounder.cfg.eval.score_gamma, candidates=500, nprobe=8)
    recalls = recalls_at_10(grounder, exact, approximate)
    assert np.mean(recalls) >= 0.9, recalls  # 500 of 5,440 moments scored


def recalls_at_10(grounder, exact: ExactSearch, search, queries: int = 20) -> list[float]:
    """``search``'s recall@10 against ``exact``'s top 10, for each of ``queries`` clustered queries."""
    recalls = []
    for s_c, s_u in zip(*query_vectors(grounder, queries)):
        want = exact.rank(exact.scores(s_c, s_u), top_k=10, per_video=None, nms_thresh=0.5)
        got = search.rank(search.scores(s_c, s_u), top_k=10, per_video=None, nms_thresh=0.5)
        recalls.append(len(set(want) & set(got)) / 10)
    return recalls


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    other = faiss.index_factory(128, "IVF4,Flat", faiss.METRIC_INNER_PRODUCT)
    vectors = np.random.default_rng(0).standard_normal((5440, 128)).astype(np.float32)
    other.train(vectors)
    other.add(vectors)
    faiss.write_index(other, str(path))


@pytest.mark.parametrize("damage, sentence", [
    (_flip_byte, "is not the file g2l wrote (its SHA-256 differs from index.json's)"),
    (_foreign, "is not the file g2l wrote (its SHA-256 differs from index.json's)"),
    (lambda path: path.unlink(), "is missing"),
    (lambda path: (path.unlink(), os.mkfifo(path)), "is not a regular file"),
])
def test_a_damaged_foreign_or_missing_faiss_file_is_refused_in_a_sentence(grounder, library, tmp_path, damage,
                                                                         sentence, monkeypatch, capsys):
    folder = copy_of(library, tmp_path)
    damage(folder / ann.FAISS_FILE)
    loaded, deserialize = [], faiss.deserialize_index
    monkeypatch.setattr(faiss, "deserialize_index", lambda data: loaded.append(data) or deserialize(data))
    index = VideoIndex.open(folder, grounder)
    with pytest.raises(VideoIndexError, match="approximate index approximate.faiss " + sentence.replace("(", r"\(")
                       .replace(")", r"\)") + r"; rebuild it with g2l-index approximate .*, or search with --exact$"):
        index.search(grounder, QUERIES, approximate=True)
    assert search_main([str(folder), QUERIES[0], "--approximate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: index ") and err.count("\n") == 1 and sentence in err
    # the default, above the size where it is used: exact search, the sentence as a warning
    monkeypatch.setattr(approximate_module, "APPROXIMATE_ABOVE", 0)
    with pytest.warns(UserWarning, match=sentence.replace("(", r"\(").replace(")", r"\)") + ".*; searching exactly"):
        found = index.search(grounder, QUERIES)
    assert found == index.search(grounder, QUERIES, approximate=False)
    assert loaded == []  # FAISS never saw the bytes
    # rebuilt by g2l-index approximate, then used
    assert index_main(["approximate", str(folder)]) == 0
    assert "moments in IVF" in capsys.readouterr().err
    assert VideoIndex.open(folder, grounder).search(grounder, QUERIES, approximate=True)[0].moments


def test_a_stale_faiss_index_is_not_used_and_add_approximate_rebuilds_it(grounder, library, tmp_path, monkeypatch,
                                                                        capsys):
    folder = copy_of(library, tmp_path)
    with VideoIndex.open(folder, grounder, write=True) as index:
        index.add_embeddings(clustered_entries(grounder, 2, first=40, seed=1))
    index = VideoIndex.open(folder, grounder)
    assert index.info()["approximate"] == "stale"
    with pytest.raises(VideoIndexError, match="has a stale .* approximate index; build it with g2l-index approximate"):
        index.search(grounder, QUERIES, approximate=True)
    monkeypatch.setattr(approximate_module, "APPROXIMATE_ABOVE", 0)
    assert index.search(grounder, QUERIES) == index.search(grounder, QUERIES, approximate=False)  # exact, silently
    assert index_main(["approximate", str(folder)]) == 0
    index = VideoIndex.open(folder, grounder)
    assert index.info()["approximate"] == "ready" and index.manifest["approximate"]["moments"] == 42 * 136


def test_an_index_without_one_says_how_to_build_it(grounder, tmp_path):
    with VideoIndex.create(tmp_path / "index", grounder) as index:
        index.add_embeddings(clustered_entries(grounder, 1))
    with pytest.raises(VideoIndexError, match="has no approximate index; build it with g2l-index approximate"):
        index.search(grounder, QUERIES, approximate=True)


def test_faiss_missing_names_the_extra(grounder, library, tmp_path, monkeypatch, capsys):
    folder = copy_of(library, tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    monkeypatch.setitem(sys.modules, "faiss", None)
    sentence = "approximate search needs faiss, which is not installed; pip install 'g2l[library]'"
    assert index_main(["approximate", str(folder)]) == 2
    assert capsys.readouterr().err == f"error: {sentence}\n"
    assert search_main([str(folder), QUERIES[0], "--approximate"]) == 2
    assert capsys.readouterr().err == f"error: {sentence}\n"
    assert sorted(p.name for p in folder.iterdir()) == before
    monkeypatch.setattr(approximate_module, "APPROXIMATE_ABOVE", 0)  # the default: exact, with the sentence as a warning
    index = VideoIndex.open(folder, grounder)
    with pytest.warns(UserWarning, match="pip install 'g2l\\[library\\]'; searching exactly"):
        assert index.search(grounder, QUERIES)[0].moments


def test_cli_build_approximate_then_search_and_info(tmp_path, capsys):
    from tests.video_utils import write_test_video

    write_test_video(tmp_path / "a.mp4", duration_s=6.0, fps=5.0, size=(64, 48))
    folder = tmp_path / "index"
    assert index_main(["build", str(folder), str(tmp_path / "a.mp4"), "--approximate", "--quiet"]) == 0
    assert re.search(r"g2l-index approximate: \d+ moments in IVF\d+,Flat", capsys.readouterr().err)
    assert index_main(["info", str(folder)]) == 0
    assert "approximate index: ready" in capsys.readouterr().out
    assert search_main([str(folder), QUERIES[0], "--approximate", "--json"]) == 0
    approximate_lines = capsys.readouterr().out
    assert search_main([str(folder), QUERIES[0], "--json"]) == 0  # below the size: exact, the same here
    assert capsys.readouterr().out == approximate_lines


def test_a_damaged_shard_is_an_error_not_a_fallback(grounder, library, tmp_path, monkeypatch):
    folder = copy_of(library, tmp_path)
    shard = next((folder / "shards").iterdir())
    (shard / "cells_u.npy").write_bytes(b"not an array")
    monkeypatch.setattr(approximate_module, "APPROXIMATE_ABOVE", 0)
    index = VideoIndex.open(folder, grounder)
    with pytest.raises(VideoIndexError, match="cells_u.npy is damaged"):
        index.search(grounder, QUERIES)


def test_the_commands_help_names_the_default_size_the_library_uses():
    from g2l.cli.library import APPROXIMATE_ABOVE_TEXT

    assert APPROXIMATE_ABOVE_TEXT == f"{approximate_module.APPROXIMATE_ABOVE:,}"


def test_fetch_vectors_inner_products_are_the_mean_of_the_two_cosines():
    rng = np.random.default_rng(3)
    c, u, s_c, s_u = (normalised(rng.standard_normal((7, 16))) for _ in range(4))
    moments, queries = ann.fetch_vectors(c, u), ann.fetch_vectors(s_c, s_u)
    assert moments.shape == (7, 32) and moments.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(moments, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(moments @ queries.T, (c @ s_c.T + u @ s_u.T) / 2, atol=1e-6)


def random_entries(grounder, videos: int, seed: int = 0):
    """Gaussian moments with independent IoU features: the IoU cosine decides much of the score."""
    rng = np.random.default_rng(seed)
    spans = grounder.moment_embeddings(grounder.encode_features(np.ones((30, 1280), np.float32), 30.0))[0]
    dim = grounder.cfg.model.joint_dim
    return [(IndexedVideo(f"r{v}.mp4", f"/nowhere/r{v}.mp4", None, 30.0, 0), spans,
             normalised(rng.standard_normal((len(spans), dim))), normalised(rng.standard_normal((len(spans), dim))))
            for v in range(videos)]


def test_candidates_by_both_cosines_find_the_top_where_the_iou_cosine_decides(grounder, tmp_path):
    with VideoIndex.create(tmp_path / "random", grounder) as index:
        index.add_embeddings(random_entries(grounder, 40))
        index.build_approximate()
    index = VideoIndex.open(tmp_path / "random", grounder)
    blocks, gamma = index._blocks(), grounder.cfg.eval.score_gamma
    exact = ExactSearch(blocks, gamma=gamma)
    approximate = ann.ApproximateSearch(blocks, ann.load_faiss_index(index.folder, index.manifest), gamma=gamma,
                                        candidates=300, nprobe=1000)  # every list: the fetch alone is tested
    cells_c = np.concatenate([np.asarray(b.cells_c, np.float32) for b in blocks])
    rng = np.random.default_rng(8)
    recall_both, recall_contrast = [], []
    for s_c, s_u in zip(normalised(rng.standard_normal((20, 128))), normalised(rng.standard_normal((20, 128)))):
        want = set(exact.rank(exact.scores(s_c, s_u), top_k=10, per_video=None, nms_thresh=0.5))
        got = approximate.rank(approximate.scores(s_c, s_u), top_k=10, per_video=None, nms_thresh=0.5)
        recall_both.append(len(want & set(got)) / 10)
        by_contrast = np.argsort(-(cells_c @ s_c), kind="stable")[:300]  # the former fetch, done exactly
        scores = np.full(len(cells_c), -np.inf, np.float32)
        scores[by_contrast] = exact.scores(s_c, s_u)[by_contrast]
        recall_contrast.append(len(want & set(exact.rank(scores, top_k=10, per_video=None, nms_thresh=0.5))) / 10)
    assert np.mean(recall_both) >= 0.95 and np.mean(recall_contrast) < 0.5, (recall_both, recall_contrast)


def test_a_faiss_file_that_fetched_by_the_contrast_cosine_alone_is_stale(grounder, library, tmp_path):
    folder = copy_of(library, tmp_path)
    manifest = json.loads((folder / "index.json").read_text())
    del manifest["approximate"]["fetch"]  # as the first approximate indexes were recorded
    (folder / "index.json").write_text(json.dumps(manifest))
    index = VideoIndex.open(folder, grounder)
    assert index.info()["approximate"] == "stale"
    with pytest.raises(VideoIndexError, match="has a stale .* approximate index; build it with g2l-index approximate"):
        index.search(grounder, QUERIES, approximate=True)
