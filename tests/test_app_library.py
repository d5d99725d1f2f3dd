"""The Library tab's handlers without a browser (g2l/app_library.py; the tab in Chromium is in
tests/test_app.py): the results table from search results, the match sentences, the limits of the
boxes, which files may be served (only a video of the open index, still the file indexed), and the
one sentence of each error (no index open, an empty query, a damaged index, a missing video)."""

import html
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from g2l.app_library import (NO_INDEX, LibraryAppError, LibraryHandlers, library_queries, playable_file,
                             results_html, search_limits, verdict)
from g2l.inference import GroundingError
from g2l.library import IndexedVideo, VideoIndex
from g2l.library.index import LibraryMoment, LibraryResult
from g2l.library.store import file_identity


def result(query, match, *moments):
    return LibraryResult(query, match, [LibraryMoment(*m) for m in moments])


def test_results_table_and_match_sentences():
    results = [result("the red circle grows.", True, ("clips/a <1>.mp4", 1.5, 3.0, 0.8125),
                      ("b.mp4", 0.0, 2.25, 0.5)),
               result("a dog", False, ("sub/c.mp4", 4.0, 6.0, 0.25))]
    page = results_html(results, 0.7)
    rows = re.findall(r'<tr class="g2l-hit" data-query="(\d)" data-rank="(\d)" data-video="([^"]*)" '
                      r'data-start="([^"]*)" data-end="([^"]*)" data-score="([^"]*)"', page)
    assert rows == [("0", "1", "clips/a &lt;1&gt;.mp4", "1.5", "3.0", "0.8125"),
                    ("0", "2", "b.mp4", "0.0", "2.25", "0.5"), ("1", "1", "sub/c.mp4", "4.0", "6.0", "0.25")]
    cells = re.findall(r'<td class="g2l-video-cell">([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>',
                       page)
    assert cells == [("a &lt;1&gt;.mp4", "1.50", "3.00", "0.812"), ("b.mp4", "0.00", "2.25", "0.500"),
                     ("c.mp4", "4.00", "6.00", "0.250")]  # the file name; the path as indexed is in the row's title
    assert 'title="clips/a &lt;1&gt;.mp4: play from 1.5 s"' in page and "<1>" not in page
    assert verdict(results[0], 0.7) == ("g2l-match", "match: the best moment scores 0.812, at or above the model's "
                                                     "threshold 0.700")
    assert verdict(results[1], 0.7) == ("g2l-no-match", "no match: the best moment scores 0.250, below the model's "
                                                        "threshold 0.700")
    assert html.escape(verdict(results[1], 0.7)[1]) in page
    unfitted = result("x", None, ("b.mp4", 0.0, 1.0, 0.9))
    kind, sentence = verdict(unfitted, None)
    assert kind == "g2l-no-threshold" and sentence.startswith("this model makes no match decision")
    assert "makes no match decision" in results_html([unfitted], None) and "g2l-match" not in results_html([unfitted], None)


def test_the_boxes_limits():
    assert library_queries(" a dog\n\n runs \n", 2) == ["a dog", "runs"]
    with pytest.raises(GroundingError, match="3 queries were given and this app searches at most 2 at once"):
        library_queries("a\nb\nc", 2)
    with pytest.raises(GroundingError, match="every query must be a non-empty sentence"):
        library_queries("  \n", 2)
    assert search_limits(10, None) == (10, None) and search_limits(3.0, 0) == (3, None)
    assert search_limits(1, 2) == (1, 2)
    for top_k, per_video, message in ((0, None, "moments per query must be 1 to 100"), (101, None, "1 to 100"),
                                      (None, None, "1 to 100"), (2.5, None, "must be a whole number"),
                                      (float("nan"), None, "whole number"), (5, -1, "moments per video must be empty"),
                                      (5, float("inf"), "whole number")):
        with pytest.raises(LibraryAppError, match=message):
            search_limits(top_k, per_video)


def indexed(path: Path) -> IndexedVideo:
    resolved, identity = file_identity(path)
    return IndexedVideo(str(path), resolved, identity, 10.0, 1)


def test_only_the_indexed_file_itself_is_played(tmp_path):
    index = SimpleNamespace(folder=tmp_path / "lib")
    good = tmp_path / "a.mp4"
    good.write_bytes(b"video")
    assert playable_file(index, indexed(good)) == str(good.resolve())
    notes = tmp_path / "notes.txt"
    notes.write_text("secret")
    cases = [(indexed(notes), r"is not a video file by its name \(notes.txt\); the app plays video files only"),
             (IndexedVideo("v1", "features:v1", None, 10.0, 1), "was indexed from precomputed features"),
             (IndexedVideo("rel.mp4", "rel.mp4", [0, 0, 0, 0, 0], 10.0, 1), "not a video file by its name")]
    changed = tmp_path / "changed.mp4"
    changed.write_bytes(b"video")
    cases.append((indexed(changed), "has changed since it was indexed"))
    changed.write_bytes(b"other bytes")
    gone = tmp_path / "gone.mp4"
    gone.write_bytes(b"video")
    cases.append((indexed(gone), rf"is missing \(it was {re.escape(str(gone.resolve()))}\); put it back, or run "
                                 rf"g2l-index verify --fix {re.escape(str(index.folder))}"))
    gone.unlink()
    linked = tmp_path / "linked.mp4"
    linked.write_bytes(b"video")
    cases.append((indexed(linked), "is no longer a regular file"))
    linked.unlink()
    linked.symlink_to(good)  # a link planted where the video was, to the file or anywhere else
    for video, message in cases:
        with pytest.raises(LibraryAppError, match=message):
            playable_file(index, video)


@pytest.fixture(scope="module")
def grounder():
    from g2l.assets import demo_checkpoint
    from g2l.inference import Grounder

    return Grounder.from_pretrained(str(demo_checkpoint()), device="cpu")


def build_index(grounder, folder: Path, files: list[Path]) -> None:
    """An index of ``files`` (tiny stand-ins for videos: nothing is decoded) with random moments."""
    entries = []
    for seed, path in enumerate(files):
        path.write_bytes(b"video %d" % seed)
        features = np.random.default_rng(seed).normal(size=(12, grounder.cfg.data.feature_dim)).astype(np.float32)
        video = grounder.encode_features(features, 12.0, name=path.name)
        resolved, identity = file_identity(path)
        entries.append((IndexedVideo(str(path), resolved, identity, 12.0, 0), *grounder.moment_embeddings(video)))
    with VideoIndex.create(folder, grounder) as index:
        index.add_embeddings(entries)


def test_search_and_play_through_the_handlers(grounder, tmp_path):
    folder = tmp_path / "lib"
    files = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    build_index(grounder, folder, files)
    served = []
    handlers = LibraryHandlers(grounder, max_queries=3, serve=served.append)

    # Nothing open yet; then a folder that is no index; then the index.
    assert handlers.search(None, "a dog", 5, None) == (f'<div class="g2l-error">error: {html.escape(NO_INDEX)}</div>',
                                                         "", None)
    status, current, _, _ = handlers.open(str(tmp_path))
    assert current == {"error": f"{tmp_path} is not a g2l index (it has no index.json); build one with g2l-index build"}
    assert handlers.search(current, "a dog", 5, None)[0] == status  # Search repeats why the Open failed
    status, current, _, _ = handlers.open(str(folder))
    assert current == str(folder) and f"index {folder}: 2 videos" in status
    assert "has no letters" in handlers.search(current, "!!", 5, None)[0]

    status, table, found = handlers.search(current, "the red circle grows.\na dog", 4, 1)
    expected = VideoIndex.open(folder, grounder).search(grounder, ["the red circle grows.", "a dog"], top_k=4,
                                                        per_video=1)
    assert found == {"index": str(folder), "rows": [[(m.video, m.start_s, m.end_s, m.score, m.resolved)
                                                    for m in r.moments] for r in expected]}
    assert table == results_html(expected, None) and "searched 2 queries" in status

    # A model with a match threshold: each query says match or no match, with its best score.
    best = [r.moments[0].score for r in expected]
    grounder.match = {"threshold": (best[0] + best[1]) / 2, "auroc": 0.9}  # a fit that decides
    try:
        matched = handlers.search(current, "the red circle grows.\na dog", 4, 1)[1]
    finally:
        grounder.match = None
    sentences = re.findall(r'<span class="g2l-verdict ([^"]*)">([^<]*)</span>', matched)
    high, low = (0, 1) if best[0] > best[1] else (1, 0)
    assert sentences[high] == ("g2l-match", f"match: the best moment scores {best[high]:.3f}, at or above the "
                                            f"model&#x27;s threshold {(best[0] + best[1]) / 2:.3f}")
    assert sentences[low] == ("g2l-no-match", f"no match: the best moment scores {best[low]:.3f}, below the "
                                              f"model&#x27;s threshold {(best[0] + best[1]) / 2:.3f}")

    path, playing = handlers.play(found, 1, 2)
    second = expected[1].moments[1]
    assert path == str(Path(second.video).resolve()) and served == [path]
    assert f"{second.start_s:.2f} s to {second.end_s:.2f} s" in playing
    # Only a row of the last search, and only a file of the index, is ever served.
    for bad_found, q, rank in ((found, 0, 3), (found, 2, 1), (found, "0", 1), (found, None, None), (None, 0, 1)):
        assert handlers.play(bad_found, q, rank)[0] is None
    planted = {"index": str(folder), "rows": [[("/etc/passwd", 0.0, 1.0, 1.0, "/etc/passwd")]]}
    player, playing = handlers.play(planted, 0, 1)
    assert player is None and "video /etc/passwd is no longer in index" in playing
    assert "not one of the last search&#x27;s results" in handlers.play({**planted, "rows": [[("/etc/passwd",)]]}, 0, 1)[1]
    assert served == [path]

    # A video of the index gone since: one sentence, nothing served.
    Path(second.video).unlink()
    player, playing = handlers.play(found, 1, 2)
    assert player is None and f"video {second.video} of index {folder} is missing" in playing and served == [path]

    # The index rewritten while the app runs is opened again; a damaged one says so.
    with VideoIndex.open(folder, grounder, write=True) as index:
        index.remove([files[0]])
    rows = handlers.search(current, "a dog", 10, None)[2]["rows"]
    assert {row[0] for row in rows[0]} == {str(files[1])}
    manifest = folder / "index.json"
    manifest.write_text(manifest.read_text()[:-20])
    status, table, found = handlers.search(current, "a dog", 5, None)
    assert status.startswith(f'<div class="g2l-error">error: index {folder} is damaged: index.json cannot be read')
    assert table == "" and found is None


def test_an_index_of_another_model_is_refused_with_the_librarys_sentence(grounder, tmp_path):
    folder = tmp_path / "lib"
    build_index(grounder, folder, [tmp_path / "a.mp4"])
    manifest = folder / "index.json"
    manifest.write_text(manifest.read_text().replace('"weights_sha256": "', '"weights_sha256": "00'))
    status, current, _, _ = LibraryHandlers(grounder, max_queries=3).open(f"  {folder}  ")
    assert current["error"].startswith(f"index {folder} was built with another model (its weights differ)")
    assert status == f'<div class="g2l-error">error: {html.escape(current["error"])}</div>'
    assert "Traceback" not in status and os.path.isdir(folder)


def test_g2l_app_refuses_a_bad_index_before_serving(grounder, tmp_path, capsys):
    """``g2l-app --index`` opens the index before the server starts: another model's is one sentence, exit 2."""
    from g2l.cli import app_main

    folder = tmp_path / "lib"
    build_index(grounder, folder, [tmp_path / "a.mp4"])
    manifest = folder / "index.json"
    manifest.write_text(manifest.read_text().replace('"weights_sha256": "', '"weights_sha256": "00'))
    assert app_main(["--index", str(folder), "--port", "9"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: index {folder} was built with another model (its "
                                                      "weights differ), whose scores mean nothing to this one")
    assert app_main(["--index", str(tmp_path / "nowhere"), "--port", "9"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: index {tmp_path / 'nowhere'} is not a folder; pass the folder "
                                               "g2l-index build made")


def test_two_videos_indexed_under_one_path_each_play_their_own_file(grounder, tmp_path):
    """Two folders' clip.mp4, both indexed as "clip.mp4" (each added from its own folder): a result
    carries the video's resolved path, so a click plays that file and not the other."""
    folder = tmp_path / "lib"
    files = [tmp_path / "one" / "clip.mp4", tmp_path / "two" / "clip.mp4"]
    entries = []
    for seed, path in enumerate(files):
        path.parent.mkdir()
        path.write_bytes(b"video %d" % seed)
        features = np.random.default_rng(seed).normal(size=(12, grounder.cfg.data.feature_dim)).astype(np.float32)
        resolved, identity = file_identity(path)
        entries.append((IndexedVideo("clip.mp4", resolved, identity, 12.0, 0),
                        *grounder.moment_embeddings(grounder.encode_features(features, 12.0, name=path.name))))
    with VideoIndex.create(folder, grounder) as index:
        index.add_embeddings(entries)
    handlers = LibraryHandlers(grounder, max_queries=3, serve=None)
    _, current, _, _ = handlers.open(str(folder))
    _, _, found = handlers.search(current, "a dog", 10, 1)  # one moment of each video
    rows = found["rows"][0]
    assert {row[0] for row in rows} == {"clip.mp4"} and {row[4] for row in rows} == {str(f.resolve()) for f in files}
    for rank, row in enumerate(rows, start=1):
        path, playing = handlers.play(found, 0, rank)
        assert path == row[4] and "clip.mp4" in playing
