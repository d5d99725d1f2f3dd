"""What ``g2l-ground --batch`` does to files before any model is loaded (g2l/batch.py's plan): it
never deletes or appends to a file it did not write, holds one lock per output, reads bounded
pieces, and makes each bad line that line's failure, with its number."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from g2l import batch
from g2l.batch import plan_batch
from g2l.batch_output import MADE_BY_FORMAT, BatchError, lock_path, made_by_path
from g2l.errors import path_problem

LINE = json.dumps({"video": "clip.mp4", "query": "a square grows"})


def _pairs(folder: Path, *lines: str, name: str = "pairs.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _answer(line_no: int, text: str) -> str:
    """An output line as a run writes it (its key first), with one moment."""
    key = {"input_line": line_no, "input_sha256": hashlib.sha256(text.encode()).hexdigest()}
    return json.dumps({**key, **json.loads(text), "moments": [{"start": 0.0, "end": 1.0, "score": 0.5}]}) + "\n"


def _ours(out: Path, text: str) -> Path:
    """``out`` holding ``text``, with the record of a run beside it."""
    made_by_path(out).write_text(json.dumps({"format": MADE_BY_FORMAT}))
    out.write_text(text)
    return out


@pytest.mark.parametrize("note", ["important note\n", "important note", '{"id": 1}\n', "\n"])
def test_a_file_g2l_did_not_write_is_refused_and_left_as_it_was(tmp_path, note):
    pairs = _pairs(tmp_path, LINE)
    notes = tmp_path / "notes.txt"
    notes.write_text(note)
    with pytest.raises(BatchError, match=r"notes.txt was not written by g2l-ground --batch .*notes.txt.made-by.json "
                                         r"does not exist; move the output away"):
        plan_batch(pairs, notes)
    assert notes.read_text() == note
    # Not even with a record beside it: a whole line that is not an answer is never dropped.
    made_by_path(notes).write_text(json.dumps({"format": MADE_BY_FORMAT}))
    if note.endswith("\n") and note.strip():
        with pytest.raises(BatchError, match="has a line \\(1\\) that g2l-ground --batch did not write"):
            plan_batch(pairs, notes)
        assert notes.read_text() == note


def test_a_proc_file_as_output_is_refused(tmp_path):
    if not Path("/proc/version").is_file():
        pytest.skip("no /proc/version here")
    with pytest.raises(BatchError, match="/proc/version was not written by g2l-ground --batch"):
        plan_batch(_pairs(tmp_path, LINE), "/proc/version")


def test_only_a_last_line_without_its_newline_is_dropped(tmp_path):
    pairs = _pairs(tmp_path, LINE, LINE.replace("grows", "shrinks"))
    whole = _answer(1, LINE)
    out = _ours(tmp_path / "preds.jsonl", whole + whole[:40])  # the second answer cut by a kill
    with plan_batch(pairs, out) as plan:
        assert (plan.already_done, plan.todo, plan.lines) == (1, 1, 2)
        assert plan.line_no.tolist() == [2]
    assert out.read_text() == whole


@pytest.mark.parametrize("how", ["same path", "symbolic link", "hard link"])
def test_out_naming_the_pairs_file_is_refused(tmp_path, how):
    pairs = _pairs(tmp_path, LINE)
    out = {"same path": pairs, "symbolic link": tmp_path / "link.jsonl", "hard link": tmp_path / "hard.jsonl"}[how]
    if how == "symbolic link":
        out.symlink_to(pairs)
    elif how == "hard link":
        os.link(pairs, out)
    with pytest.raises(BatchError, match="is the pairs file itself"):
        plan_batch(pairs, out)
    assert pairs.read_text() == LINE + "\n" and not made_by_path(out).exists()


def test_one_writer_at_a_time(tmp_path):
    pairs, out = _pairs(tmp_path, LINE), tmp_path / "preds.jsonl"
    with plan_batch(pairs, out):
        with pytest.raises(BatchError, match=f"output {out} is being written by another g2l-ground --batch run"):
            plan_batch(pairs, out)
        # Another process too (flock is per open file, so the test above already is a second opener).
        other = subprocess.run([sys.executable, "-c", "import sys; from g2l.batch import plan_batch\n"
                                "try: plan_batch(sys.argv[1], sys.argv[2])\nexcept ValueError as e: print(e)",
                                str(pairs), str(out)], capture_output=True, text=True, env={**os.environ,
                                "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert "is being written by another g2l-ground --batch run" in other.stdout, other.stderr
    with plan_batch(pairs, out) as plan:  # released
        assert plan.todo == 1


@pytest.mark.parametrize("planted", ["link to a missing file", "link to a file", "fifo"])
def test_a_planted_lock_file_is_refused_not_followed(tmp_path, planted):
    pairs, out = _pairs(tmp_path, LINE), tmp_path / "preds.jsonl"
    target = tmp_path / "elsewhere"
    if planted == "fifo":
        os.mkfifo(lock_path(out))
    else:
        if planted == "link to a file":
            target.write_text("keep")
        lock_path(out).symlink_to(target)
    refused = "the lock file .* cannot be used \\((it is a link|it is not a regular file)\\); remove it"
    with pytest.raises(BatchError, match=refused):
        plan_batch(pairs, out)  # and no hang on the FIFO
    assert (target.read_text() == "keep") if planted == "link to a file" else not target.exists()


def _plan_failures(tmp_path, *lines: str, prefix: bytes = b"") -> dict:
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(prefix + "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass"))
    with plan_batch(path, tmp_path / "preds.jsonl") as plan:
        return dict(plan.failures), plan


def test_each_bad_line_is_that_lines_failure(tmp_path):
    deep = '{"video": "clip.mp4", "query": "a square", "x": ' + "[" * 900 + "]" * 900 + "}"
    queries = json.dumps({"video": "clip.mp4", "queries": ["a square"] * 1001})
    failures, plan = _plan_failures(
        tmp_path,
        '{"video": "clip.mp4", "query": "a square", "id": "\\ud800"}',  # 1: a lone surrogate, carried
        deep,  # 2: nesting json reads but cannot write back
        '{"video": "cl\\u0000ip.mp4", "query": "a square"}',  # 3: a NUL in the path
        '{"video": "~no_such_user_g2l/clip.mp4", "query": "a square"}',  # 4
        '{"video": "clip.mp4", "query": "a square", "id": NaN}',  # 5
        '{"video": "clip.mp4", "query": "a square", "id": 1e400}',  # 6
        '{"video": "clip.mp4", "query": "a square", "query": "a circle"}',  # 7: a repeated key
        queries,  # 8
        '{"video": "clip.mp4", "query": "' + "a" * (batch.MAX_LINE_BYTES + 10) + '"}',  # 9: read in pieces
        "\udcff",  # 10: not UTF-8
        '{"video": "clip.mp4", "query": "a square", "input_line": 3}',  # 11: a reserved field
        LINE,  # 12: fine
    )
    expected = {1: "lone surrogate", 2: "nested too deep to write", 3: "NUL character",
                4: "home folder of an unknown user",
                5: "NaN, which is not a JSON number", 6: "too large for a float", 7: 'the key "query" appears twice',
                8: "1,001 queries on one line, more than 1,000", 9: "over 1,000,000 bytes", 10: "not UTF-8",
                11: 'output field "input_line"'}
    assert sorted(failures) == sorted(expected)
    for line_no, says in expected.items():
        assert says in failures[line_no], (line_no, failures[line_no])
    assert plan.line_no.tolist() == [12] and plan.lines == 12


def test_byte_order_mark_and_relative_paths_from_the_pairs_file_as_named(tmp_path):
    real, other = tmp_path / "real", tmp_path / "other"
    real.mkdir(), other.mkdir()
    (real / "pairs.jsonl").write_bytes(b"\xef\xbb\xbf" + (LINE + "\n").encode())
    (other / "pairs.jsonl").symlink_to(real / "pairs.jsonl")
    with plan_batch(other / "pairs.jsonl", tmp_path / "preds.jsonl") as plan:
        assert plan.failures == [] and plan.videos == [other / "clip.mp4"]


def test_pairs_files_that_cannot_be_read_are_one_sentence(tmp_path):
    out = tmp_path / "preds.jsonl"
    for pairs, says in [("/proc/self/mem", "cannot be read"), (tmp_path / ("p" * 300), "File name too long"),
                        (tmp_path, "is a directory")]:
        if str(pairs).startswith("/proc") and not Path(pairs).exists():
            continue
        with pytest.raises(BatchError, match=f"pairs file .*{says}"):
            plan_batch(pairs, out)
    with pytest.raises(BatchError, match="File name too long"):
        plan_batch(_pairs(tmp_path, LINE), tmp_path / ("o" * 300))


def test_path_problem_never_raises():
    assert "File name too long" in path_problem("/tmp/" + "a" * 300)
    assert "NUL" in path_problem("/tmp/a\0b")
    assert path_problem("/") == "is a directory"


def test_stale_temporaries_beside_the_output_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live = tmp_path / f".preds.jsonl.{dead.pid}.tmp", tmp_path / f".preds.jsonl.{os.getpid()}.tmp"
    stale.write_text("half"), live.write_text("mine")
    with plan_batch(_pairs(tmp_path, LINE), tmp_path / "preds.jsonl"):
        assert not stale.exists() and live.exists()
