"""``g2l-ground --batch`` from the command line, and the progress bars of g2l-ground and g2l-extract
that only a terminal sees."""

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

from tests.video_utils import write_test_video

REPO = Path(__file__).resolve().parents[2]
GROUND = [sys.executable, str(REPO / "tools" / "ground.py")]


def _run(args, **kwargs):
    return subprocess.run([*GROUND, *args], capture_output=True, text=True, cwd=REPO, **kwargs)


def test_batch_reports_failures_by_line_and_exits_1(tmp_path):
    write_test_video(tmp_path / "clip.mp4", duration_s=6.0, fps=10.0)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"video": "clip.mp4", "queries": ["a square grows", "the circle moves"]}) + "\n"
                     + json.dumps({"video": "gone.mp4", "query": "a square grows"}) + "\n"
                     + "[1, 2]\n")
    out = tmp_path / "preds.jsonl"
    proc = _run(["--batch", str(pairs), "--out", str(out), "--top-k", "2"])
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(str(pairs))]
    assert errors == [f"{pairs}:3: not a JSON object", f"{pairs}:2: video {tmp_path / 'gone.mp4'}: does not exist"]
    assert "1 of 3 lines answered (2 queries)" in proc.stderr and "2 failed" in proc.stderr
    (answer,) = map(json.loads, out.read_text().splitlines())
    assert [r["query"] for r in answer["results"]] == ["a square grows", "the circle moves"]
    assert all(len(r["moments"]) == 2 for r in answer["results"])
    # The same lines again: nothing new to answer, and the two bad lines still fail.
    again = _run(["--batch", str(pairs), "--out", str(out), "--top-k", "2"])
    assert again.returncode == 1 and "0 of 3 lines answered" in again.stderr and "1 already in the output" in again.stderr
    assert len(out.read_text().splitlines()) == 1


def test_batch_usage_errors_are_one_line(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"video": "x.mp4", "query": "a square"}) + "\n")
    for args, expected in [
        (["--batch", str(pairs)], "--batch needs --out"),
        (["--batch", str(pairs), "--out", str(tmp_path / "o.jsonl"), "video.mp4"], "pass no VIDEO or QUERY"),
        (["--batch", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.jsonl")], "does not exist"),
        (["examples/demo.mp4", "a query", "--out", str(tmp_path / "o.jsonl")], "--out goes with --batch"),
        (["examples/demo.mp4"], "at least one query"),
        (["examples/demo.mp4", "a query", "--gt", "5", "2", "--plot", str(tmp_path / "p.png")], "0 <= START < END"),
        (["examples/demo.mp4", "a query", "b query", "--gt", "1", "2", "--plot", str(tmp_path / "p.png")],
         "one --gt START END per query"),
        (["examples/demo.mp4", "a query", "--gt", "1", "2"], "pass --plot"),
    ]:
        proc = _run(args)
        assert proc.returncode == 2 and expected in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "p.png").exists()


def _run_on_terminal(args, command=None) -> tuple[int, str]:
    """Run ``command`` (default g2l-ground) with stderr on a pseudo-terminal (stdout captured apart);
    return (exit code, stderr text)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*(command or GROUND), *args], stdout=subprocess.PIPE, stderr=follower, cwd=REPO, text=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not data:
            break
        chunks.append(data)
    proc.stdout.read()
    code = proc.wait()
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def test_progress_only_on_a_terminal_and_quiet_silences_it(tmp_path):
    video = tmp_path / "clip.mp4"
    write_test_video(video, duration_s=5.0, fps=10.0)
    code, terminal = _run_on_terminal([str(video), "a square grows"])
    assert code == 0
    assert "encoding clip.mp4" in terminal and "%" in terminal  # the bar
    assert any(line.strip().startswith("encoding clip.mp4: ") and line.strip().endswith(" s")
               for line in terminal.splitlines())  # the elapsed time at the end
    code, quiet = _run_on_terminal([str(video), "a square grows", "--quiet"])
    assert code == 0 and "encoding" not in quiet
    piped = _run([str(video), "a square grows"])
    assert piped.returncode == 0 and "encoding" not in piped.stderr


def test_plot_with_ground_truth(tmp_path):
    shutil.copy(REPO / "examples" / "demo.mp4", tmp_path / "demo.mp4")
    proc = _run([str(tmp_path / "demo.mp4"), "a white square gets smaller.", "--plot", str(tmp_path / "p.png"),
                 "--gt", "2.5", "15", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_extract_progress_only_on_a_terminal(tmp_path):
    video = tmp_path / "clip.mp4"
    write_test_video(video, duration_s=3.0, fps=10.0)
    extract = [sys.executable, str(REPO / "tools" / "extract_features.py")]
    code, terminal = _run_on_terminal([str(video), "--out", str(tmp_path / "a.hdf5")], extract)
    assert code == 0 and "extracting 1 video" in terminal and "%" in terminal
    assert any(line.strip().startswith("extracting 1 video: ") and line.strip().endswith(" s")
               for line in terminal.splitlines())
    piped = subprocess.run([*extract, str(video), "--out", str(tmp_path / "b.hdf5")], capture_output=True, text=True,
                           cwd=REPO)
    assert piped.returncode == 0 and "extracting" not in piped.stderr and "%" not in piped.stderr


def test_batch_refusals_are_one_sentence_and_touch_nothing(tmp_path, capsys):
    """In-process (no interpreter start per case): names too long for the file system, an output that
    is a note or the pairs file, each one line with exit status 2, the files left as they were."""
    from g2l.cli.ground import ground_main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"video": "x.mp4", "query": "a square"}) + "\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("important note\n")
    long = str(tmp_path / ("n" * 300))
    for args, expected in [
        (["--batch", long, "--out", str(tmp_path / "o.jsonl")], f"pairs file {long} cannot be reached (File name too long)"),
        (["--batch", str(pairs), "--out", long + ".jsonl"], "cannot be reached (File name too long)"),
        (["--batch", str(pairs), "--out", str(tmp_path / "o.jsonl"), "--checkpoint", long + ".pt"],
         "cannot be reached (File name too long)"),
        (["--batch", str(pairs), "--out", str(notes)], "notes.txt was not written by g2l-ground --batch"),
        (["--batch", str(pairs), "--out", str(pairs)], "is the pairs file itself"),
    ]:
        assert ground_main(args) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert notes.read_text() == "important note\n"
    assert pairs.read_text() == json.dumps({"video": "x.mp4", "query": "a square"}) + "\n"
    assert not (tmp_path / "o.jsonl").exists()
