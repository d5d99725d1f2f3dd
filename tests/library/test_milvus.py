"""Library search through Milvus (g2l/library/milvus.py), tested in Milvus Lite (a ``.db`` folder served
in-process by the same client as a server): with candidates covering every moment it IS exact search;
on a small clustered library its recall@10 against exact search is high; an export older than the
shards is refused; a collection this index did not write is neither overwritten (without --replace)
nor believed; the commands run end to end (a missing pymilvus: tests/test_missing_extras.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from g2l.cli import index_main, search_main
from g2l.library import VideoIndex, VideoIndexError
from g2l.library import milvus as mv
from g2l.library.exact import ExactSearch
from tests.library.test_approximate import (QUERIES, clustered_entries, grounder, query_vectors,  # noqa: F401
                                            recalls_at_10)

pytest.importorskip("pymilvus", reason="the Milvus backend needs pymilvus (pip install 'g2l[milvus]')")
EVERY_LIST = 65536  # nprobe: every list of the IVF index (FAISS takes at most nlist)


@pytest.fixture(scope="module")
def library(grounder, tmp_path_factory):  # noqa: F811
    """40 clustered videos (5,440 moments) exported to their Milvus Lite file INDEX/milvus.db."""
    folder = tmp_path_factory.mktemp("lib") / "index"
    batches = []
    with VideoIndex.create(folder, grounder) as index:
        index.add_embeddings(clustered_entries(grounder, 40))
        record = mv.export(index, on_batch=lambda done, total: batches.append((done, total)))
    assert record["uri"] == "milvus.db" and record["moments"] == 40 * 136 and record["index_type"] == "IVF_FLAT"
    assert batches[-1] == (5440, 5440) and len(batches) == 2  # 4096 a batch
    assert json.loads((folder / "index.json").read_text())["milvus"] == record
    return folder


def copy_of(library: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(library, tmp_path / "copy"))


def milvus_search(grounder, folder, **options):  # noqa: F811
    index = VideoIndex.open(folder, grounder)
    blocks = index._blocks()
    search = mv.open_search(index.folder, index.manifest, blocks, gamma=grounder.cfg.eval.score_gamma)
    for name, value in options.items():
        setattr(search, name, value)
    return ExactSearch(blocks, gamma=grounder.cfg.eval.score_gamma), search


@pytest.mark.parametrize("per_video", [None, 1])
def test_with_every_moment_a_candidate_it_is_exact_search(grounder, library, per_video):  # noqa: F811
    exact, search = milvus_search(grounder, library, candidates=5440, nprobe=EVERY_LIST)
    for s_c, s_u in zip(*query_vectors(grounder, 4)):
        want = exact.rank(exact.scores(s_c, s_u), top_k=10, per_video=per_video, nms_thresh=0.5)
        scores = search.scores(s_c, s_u)
        assert np.isfinite(scores).all()  # every moment came back, with its vectors
        assert search.rank(scores, top_k=10, per_video=per_video, nms_thresh=0.5) == want
        np.testing.assert_array_equal(scores, exact.scores(s_c, s_u))  # the same bits, from Milvus's vectors


def test_recall_on_a_small_clustered_library(grounder, library):  # noqa: F811
    exact, search = milvus_search(grounder, library, candidates=500)  # the default nprobe
    recalls = recalls_at_10(grounder, exact, search)
    assert np.mean(recalls) >= 0.9, recalls  # 500 of 5,440 moments scored


def test_commands_end_to_end_and_the_api_give_exact_results(grounder, library, tmp_path, monkeypatch,  # noqa: F811
                                                           capsys):
    folder = copy_of(library, tmp_path)
    (folder / "milvus.db").rename(tmp_path / "elsewhere.db")  # a fresh export, through the command
    monkeypatch.setattr(mv.ann, "CANDIDATES", 5440)
    monkeypatch.setattr(mv, "NPROBE", EVERY_LIST)
    assert index_main(["milvus", str(folder), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "g2l-index milvus: 5440 moments in collection g2l_moments at milvus.db (IVF_FLAT, nlist 74)" in err
    assert index_main(["info", str(folder)]) == 0
    assert "milvus export: ready" in capsys.readouterr().out
    assert search_main([str(folder), *QUERIES, "--milvus", "--json"]) == 0
    milvus_lines = capsys.readouterr().out
    assert search_main([str(folder), *QUERIES, "--exact", "--json"]) == 0
    assert capsys.readouterr().out == milvus_lines and len(json.loads(milvus_lines.splitlines()[0])["moments"]) == 10
    index = VideoIndex.open(folder, grounder)
    assert index.search(grounder, QUERIES, approximate="milvus") == index.search(grounder, QUERIES, approximate=False)
    with pytest.raises(SystemExit):  # one way at a time
        search_main([str(folder), QUERIES[0], "--milvus", "--exact"])
    capsys.readouterr()


def test_an_export_older_than_the_shards_is_refused_then_exported_again(grounder, library, tmp_path,  # noqa: F811
                                                                       capsys):
    folder = copy_of(library, tmp_path)
    with VideoIndex.open(folder, grounder, write=True) as index:
        index.add_embeddings(clustered_entries(grounder, 2, first=40, seed=1))
    index = VideoIndex.open(folder, grounder)
    assert mv.milvus_state(index.manifest) == "stale"
    ready = VideoIndex.open(library, grounder).manifest
    older = {k: v for k, v in ready["milvus"].items() if k != "fetch"}  # fetched by another vector
    assert mv.milvus_state(ready) == "ready" and mv.milvus_state(dict(ready, milvus=older)) == "stale"
    with pytest.raises(VideoIndexError, match=rf"^index {folder} has a stale \(older than its videos\) Milvus export; "
                                              rf"export it with g2l-index milvus {folder}, or search with --exact$"):
        index.search(grounder, QUERIES, approximate="milvus")
    assert search_main([str(folder), QUERIES[0], "--milvus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stale" in err and "Traceback" not in err
    assert index_main(["milvus", str(folder), "--quiet"]) == 0  # its own collection: no --replace needed
    capsys.readouterr()
    index = VideoIndex.open(folder, grounder)
    assert mv.milvus_state(index.manifest) == "ready" and index.manifest["milvus"]["moments"] == 42 * 136
    assert index.search(grounder, QUERIES, approximate="milvus")[0].moments


def test_a_foreign_or_changed_collection_is_refused(grounder, library, tmp_path, capsys):  # noqa: F811
    folder = copy_of(library, tmp_path)
    shared = str(folder / "milvus.db")
    other = tmp_path / "other"
    with VideoIndex.create(other, grounder) as index:
        index.add_embeddings(clustered_entries(grounder, 1, seed=3))
        before = index.manifest
        with pytest.raises(VideoIndexError, match=rf"^Milvus collection g2l_moments at {shared} already exists and was "
                                                  rf"not written by index {other}; pass --replace to overwrite it"):
            mv.export(index, uri=shared)
        assert index.manifest == before and "milvus" not in json.loads((other / "index.json").read_text())
    assert index_main(["milvus", str(other), "--uri", shared, "--quiet"]) == 2
    assert "already exists and was not written by index" in capsys.readouterr().err
    assert mv.milvus_state(VideoIndex.open(folder, grounder).manifest) == "ready"  # untouched: still believed
    assert VideoIndex.open(folder, grounder).search(grounder, QUERIES, approximate="milvus")[0].moments
    # replaced by the other index: the first one no longer believes it
    assert index_main(["milvus", str(other), "--uri", shared, "--replace", "--quiet"]) == 0
    capsys.readouterr()
    assert VideoIndex.open(other, grounder).search(grounder, QUERIES, approximate="milvus")[0].moments
    with pytest.raises(VideoIndexError, match=r"does not hold this index's moments \(it was not written by this "
                                              r"index, or not from its current videos\); export it again"):
        VideoIndex.open(folder, grounder).search(grounder, QUERIES, approximate="milvus")


def test_rows_missing_from_the_collection_or_the_collection_gone(grounder, library, tmp_path, capsys):  # noqa: F811
    folder = copy_of(library, tmp_path)
    client = mv.connect(str(folder / "milvus.db"))
    client.delete("g2l_moments", ids=[0, 1, 2])
    with pytest.raises(VideoIndexError, match=r"does not hold this index's moments \(it holds 5437 moments, the index "
                                              r"5440\); export it again with g2l-index milvus"):
        VideoIndex.open(folder, grounder).search(grounder, QUERIES, approximate="milvus")
    client.drop_collection("g2l_moments")
    assert search_main([str(folder), QUERIES[0], "--milvus"]) == 2
    assert capsys.readouterr().err == (f"error: Milvus collection g2l_moments is missing at {folder / 'milvus.db'}; "
                                       f"export it again with g2l-index milvus {folder}, or search with --exact\n")


@pytest.mark.parametrize("uri, sentence", [
    ("foo://x", "Milvus address 'foo://x' is neither a server's URL (http://host:19530) nor a Milvus Lite file"),
    ("http://127.0.0.1:1", "Milvus at http://127.0.0.1:1 cannot be reached (Fail connecting to server"),
])
def test_a_bad_address_is_one_sentence(library, tmp_path, capsys, uri, sentence):
    folder = copy_of(library, tmp_path)
    before = (folder / "index.json").read_text()
    assert index_main(["milvus", str(folder), "--uri", uri, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {sentence}") and err.count("\n") == 1
    assert (folder / "index.json").read_text() == before



@pytest.mark.parametrize("moments, chosen", [(5440, ("IVF_FLAT", 74)), (1_000_000, ("IVF_FLAT", 1000)),
                                             (1_360_000, ("IVF_SQ8", 1166)), (10_000_000, ("IVF_SQ8", 2048))])
def test_the_index_type_follows_the_faiss_choice(moments, chosen):
    # fetch vectors of width 256: float32 above 1 GiB (1,048,576 moments) get 8-bit lists (as FAISS's PQ)
    assert mv._index_params(moments, 128) == chosen
