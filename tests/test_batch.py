"""Batch grounding (g2l/batch.py): every line answered as a single ``Grounder.ground`` call answers
it, each video encoded once, the feature cache, resuming, and bad lines counted with their numbers."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from g2l.assets import demo_checkpoint
from g2l.batch import ground_batch, plan_batch
from g2l.batch_output import BatchError, made_by_path
from g2l.inference import Grounder
from tests.video_utils import write_test_video

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = json.loads((REPO / "examples" / "demo.json").read_text())


@pytest.fixture(scope="module")
def grounder():
    return Grounder.from_pretrained(str(demo_checkpoint()), device="cpu")


@pytest.fixture()
def pairs(tmp_path):
    """A pairs file: demo.mp4 on three lines (one of them a list of queries), a short clip, and four
    bad lines (lines 3, 5, 6, 7)."""
    shutil.copy(REPO / "examples" / "demo.mp4", tmp_path / "demo.mp4")
    write_test_video(tmp_path / "clip.mp4", duration_s=4.0, fps=10.0, size=(64, 48))
    q0, q1 = EXAMPLE["queries"][0]["query"], EXAMPLE["queries"][1]["query"]
    rows = [
        json.dumps({"id": "a", "video": "demo.mp4", "query": q0}),
        json.dumps({"id": "b", "video": "clip.mp4", "query": "a square moves"}),
        "{not json",
        json.dumps({"id": "c", "video": "demo.mp4", "queries": [q0, q1]}),
        json.dumps({"id": "d", "video": "missing.mp4", "query": q0}),
        json.dumps({"id": "e", "video": "demo.mp4", "query": "\u200b\u200b"}),
        json.dumps(["video", "demo.mp4"]),
        "",
        json.dumps({"id": "f", "video": str(tmp_path / "demo.mp4"), "query": q1}),  # absolute path, same file
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def _count_encodes(monkeypatch, grounder):
    calls = []
    original = Grounder.encode_video

    def counting(self, path, **kwargs):
        calls.append(Path(path).name)
        return original(self, path, **kwargs)

    monkeypatch.setattr(Grounder, "encode_video", counting)
    return calls


def _lines(path: Path) -> dict:
    return {entry["id"]: entry for entry in map(json.loads, path.read_text().splitlines())}


def test_batch_answers_like_single_calls_and_reports_bad_lines(grounder, pairs, tmp_path, monkeypatch):
    calls = _count_encodes(monkeypatch, grounder)
    failed = []
    out = tmp_path / "preds.jsonl"
    summary = ground_batch(grounder, pairs, out, top_k=3, on_failure=lambda n, why: failed.append(n))
    assert summary.lines == 8 and summary.answered == 4 and summary.queries == 5
    assert sorted(n for n, _ in summary.failures) == [3, 5, 6, 7] == sorted(failed)
    assert "missing.mp4" in dict(summary.failures)[5] and "does not exist" in dict(summary.failures)[5]
    # demo.mp4 named relatively twice and absolutely once: the same file, encoded once
    assert sorted(calls) == ["clip.mp4", "demo.mp4"] and summary.videos_encoded == 2

    got = _lines(out)
    assert set(got) == {"a", "b", "c", "f"}
    video = grounder.encode_video(tmp_path / "demo.mp4")
    q0, q1 = EXAMPLE["queries"][0]["query"], EXAMPLE["queries"][1]["query"]
    direct = grounder.ground(video, [q0, q1], top_k=3)
    # Scores agree to float rounding (a query's padding depends on the other queries of its call).
    as_json = [[{"start": m.start_s, "end": m.end_s, "score": pytest.approx(m.score, abs=1e-5)} for m in r.moments]
               for r in direct]
    assert got["a"]["moments"] == as_json[0] and got["a"]["video"] == "demo.mp4"
    assert [r["query"] for r in got["c"]["results"]] == [q0, q1]
    assert [r["moments"] for r in got["c"]["results"]] == as_json
    assert got["f"]["moments"] == as_json[1]
    assert len(got["b"]["moments"]) == 3 and all(0 <= m["start"] < m["end"] <= 4.0 + 1e-6 for m in got["b"]["moments"])


def test_cache_and_resume(grounder, pairs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = tmp_path / "first.jsonl"
    ground_batch(grounder, pairs, first, top_k=2, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 2

    calls = _count_encodes(monkeypatch, grounder)
    second = tmp_path / "second.jsonl"
    summary = ground_batch(grounder, pairs, second, top_k=2, cache_dir=cache)
    assert calls == [] and summary.videos_from_cache == 2 and summary.videos_encoded == 0
    assert _lines(second) == _lines(first)

    # A kill in the middle of the third line: the cut line is dropped, the first two kept, the rest answered.
    text = first.read_text().splitlines(keepends=True)
    first.write_text("".join(text[:2]) + text[2][: len(text[2]) // 2])
    calls.clear()
    summary = ground_batch(grounder, pairs, first, top_k=2, cache_dir=cache)
    assert summary.already_done == 2 and summary.answered == 2 and calls == []
    assert _lines(first) == _lines(second) and len(first.read_text().splitlines()) == 4
    # Nothing left: a third run answers nothing and encodes nothing.
    summary = ground_batch(grounder, pairs, first, top_k=2)
    assert summary.answered == 0 and summary.already_done == 4 and summary.videos_encoded == 0


def test_output_damaged_before_its_end_is_refused(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"video": "a.mp4", "query": "a square"}\n')
    out = tmp_path / "preds.jsonl"
    made_by_path(out).write_text('{"format": "g2l-ground --batch output, version 1"}')
    key = '{"input_line": 1, "input_sha256": "' + "0" * 64 + '"}\n'
    out.write_text(key + "not json\n" + key)
    with pytest.raises(BatchError, match=r"has a line \(2\) that g2l-ground --batch did not write"):
        plan_batch(pairs, out)
    assert out.read_text() == key + "not json\n" + key  # left as it was


def test_resume_keys_are_line_number_and_text(grounder, tmp_path):
    """Equal lines and lines whose keys come in another order are answered once each; an edited line
    is answered again; a video name too long for the file system is that line's failure."""
    write_test_video(tmp_path / "clip.mp4", duration_s=4.0, fps=10.0, size=(64, 48))
    same = json.dumps({"video": "clip.mp4", "query": "a square moves"})
    reordered = json.dumps({"query": "a square moves", "video": "clip.mp4"})
    rows = [same, same, same, reordered, json.dumps({"video": "v" * 300 + ".mp4", "query": "a square moves"})]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(rows) + "\n")
    out = tmp_path / "preds.jsonl"
    summary = ground_batch(grounder, pairs, out, top_k=1)
    assert (summary.answered, summary.already_done, summary.lines) == (4, 0, 5)
    assert [n for n, _ in summary.failures] == [5] and "File name too long" in summary.failures[0][1]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["input_line"] for w in written] == [1, 2, 3, 4]
    assert [list(w)[:2] for w in written] == [["input_line", "input_sha256"]] * 4  # first, so resuming reads only them
    assert written[0]["input_sha256"] == hashlib.sha256(same.encode()).hexdigest()
    assert written[0]["moments"] == written[1]["moments"] == written[3]["moments"]

    summary = ground_batch(grounder, pairs, out, top_k=1)
    assert (summary.answered, summary.already_done) == (0, 4)
    rows[1] = json.dumps({"video": "clip.mp4", "query": "a square grows"})
    pairs.write_text("\n".join(rows) + "\n")
    summary = ground_batch(grounder, pairs, out, top_k=1)
    assert (summary.answered, summary.already_done) == (1, 3)
    assert json.loads(out.read_text().splitlines()[-1])["query"] == "a square grows"


def test_a_resume_with_another_model_or_options_is_refused(grounder, tmp_path):
    write_test_video(tmp_path / "clip.mp4", duration_s=4.0, fps=10.0, size=(64, 48))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"video": "clip.mp4", "query": "a square moves"}) + "\n"
                     + json.dumps({"video": "clip.mp4", "query": "a circle"}) + "\n")
    out = tmp_path / "preds.jsonl"
    pairs_of_one = tmp_path / "one_pair.jsonl"
    pairs_of_one.write_text(pairs.read_text().splitlines()[0] + "\n")
    ground_batch(grounder, pairs_of_one, out, top_k=1)
    record = json.loads(made_by_path(out).read_text())
    assert record["options"] == {"top_k": 1, "window_s": None, "explain": False, "explain_target": None, "seed": None,
                                 "precision": record["options"]["precision"]}
    before = out.read_text()
    for options, says in [({"top_k": 2}, "--top-k 1 \\(now 2\\)"),
                          ({"top_k": 1, "explain": True}, "--explain off \\(now on\\)"),
                          ({"top_k": 1, "window_s": 2.0}, "--window none \\(now 2.0\\)")]:
        with pytest.raises(BatchError, match=f"preds.jsonl was made with other settings \\({says}; see preds.jsonl.made"):
            ground_batch(grounder, pairs, out, **options)
    assert out.read_text() == before  # nothing added

    # The same weights from the exported folder are the same model; other weights are not.
    exported = Grounder.from_pretrained(str(REPO / "checkpoints" / "demo-hf"), device="cpu")
    summary = ground_batch(exported, pairs, out, top_k=1)
    assert (summary.answered, summary.already_done) == (1, 1)
    with torch.no_grad():
        next(exported.model.parameters()).add_(1e-3)
    pairs.write_text(pairs.read_text() + json.dumps({"video": "clip.mp4", "query": "a dot"}) + "\n")
    with pytest.raises(BatchError, match="other settings \\(other model weights; see"):
        ground_batch(exported, pairs, out, top_k=1)
    assert len(out.read_text().splitlines()) == 2
