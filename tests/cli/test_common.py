"""The command-line wrapper itself: warnings, errors raised in worker processes, closed pipes."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from g2l.cli import eval_main, index_main, run_cli, search_main, train_main
from g2l.data.features import FeatureError

REPO = Path(__file__).resolve().parents[2]


def test_a_warning_is_one_line(capsys):
    def main(argv):
        warnings.warn("the query 'x' was cut", stacklevel=1)
        return 0

    assert run_cli(main, []) == 0
    assert capsys.readouterr().err == "warning: the query 'x' was cut\n"


def test_an_error_from_a_dataloader_worker_is_its_own_line(capsys):
    def main(argv):  # what DataLoader re-raises in the main process
        raise FeatureError("Caught FeatureError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                           "last):\n  File \"x.py\", line 1, in f\ng2l.data.features.FeatureError: the features of video "
                           "v1 in f.hdf5 cannot be read (x); extract it again\n")

    assert run_cli(main, []) == 2
    assert capsys.readouterr().err == "error: the features of video v1 in f.hdf5 cannot be read (x); extract it again\n"


def test_a_reader_that_closes_the_pipe_ends_the_tool_quietly(tmp_path):
    record = {"video": "v", "query": "q", "duration": 30.0, "gt": [2.0, 7.5], "candidates": [[2.0, 8.0, 0.9]]}
    (tmp_path / "p.jsonl").write_text(json.dumps(record) + "\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` does once it has what it wants
    proc = subprocess.run([sys.executable, "tools/eval.py", "--predictions", str(tmp_path / "p.jsonl")], cwd=REPO,
                          stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141


LONG = "y" * 300  # one name over the 255 bytes that most file systems allow


@pytest.mark.parametrize("main, argv", [
    (search_main, [LONG, "a query"]),
    (index_main, ["build", f"{LONG}/index", str(REPO / "examples" / "demo.mp4")]),
    (index_main, ["info", LONG]),
    (index_main, ["build", "index", f"{LONG}.mp4"]),
    (train_main, ["--resume", LONG]),
    (eval_main, ["--checkpoint", LONG]),
], ids=["search index", "build index", "info index", "build video", "train resume", "eval checkpoint"])
def test_a_name_too_long_is_one_sentence(main, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "too long" in err, err
    assert "characters) is too long" in err  # the path named, cut to a readable length
