"""The shipped demo: the README's main command grounds the example video correctly, offline."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from g2l.ops.spans import span_iou

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "demo.pt"
EXAMPLE = REPO / "examples" / "demo.json"


def test_shipped_files_are_small_and_match_their_checksum():
    assert CHECKPOINT.stat().st_size <= 20 * 2**20
    assert (REPO / "examples" / "demo.mp4").stat().st_size <= 2 * 2**20
    readme = (REPO / "checkpoints" / "README.md").read_text()
    digest = hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    assert re.search(rf"\b{digest}\b", readme), "checkpoints/README.md must record the checkpoint's sha256"
    assert "tools/build_demo.py" in readme
    from g2l.assets import demo_checkpoint

    assert demo_checkpoint().resolve() == CHECKPOINT.resolve()  # the package's default is this file, not a copy


def test_demo_grounds_the_example_queries_offline():
    example = json.loads(EXAMPLE.read_text())
    queries = [q["query"] for q in example["queries"]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "tools/ground.py", "examples/demo.mp4", *queries, "--json", "--top-k", "3"],
                          cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert abs(out["duration"] - example["duration"]) < 0.2
    for result, truth in zip(out["results"], example["queries"]):
        assert result["query"] == truth["query"]
        top = result["moments"][0]
        iou = float(span_iou(np.array([top["start"], top["end"]]), np.array(truth["gt"])))
        assert iou >= 0.5, (truth, top, iou)


def test_readme_main_command_is_the_example():
    readme = (REPO / "README.md").read_text()
    example = json.loads(EXAMPLE.read_text())
    line = next(line for line in readme.splitlines() if "tools/ground.py examples/demo.mp4" in line)
    for q in example["queries"]:
        assert f'"{q["query"]}"' in line


class _ScriptedGrounder:
    """Answers each (video, query) with a fixed top moment, to test how the example is chosen."""

    def __init__(self, answers):
        self.answers = answers

    def encode_video(self, path):
        return Path(path).stem

    def ground(self, video, queries, top_k):
        from types import SimpleNamespace

        return [SimpleNamespace(moments=[SimpleNamespace(start_s=s, end_s=e)]) for s, e in
                (self.answers[video][q] for q in queries)]


def test_example_choice_prefers_queries_answered_by_different_moments(tmp_path):
    from g2l.demo import choose_example

    annotations = {
        "v0": {"duration": 30, "sentences": ["a", "b"], "timestamps": [[0, 10], [2, 10]]},  # both hit, same top
        "v1": {"duration": 30, "sentences": ["a", "b"], "timestamps": [[0, 10], [20, 30]]},  # both hit, distinct
        "v2": {"duration": 30, "sentences": ["a", "b", "c"], "timestamps": [[0, 10], [20, 30], [0, 5]]},  # one miss
    }
    (tmp_path / "test.json").write_text(json.dumps(annotations))
    answers = {"v0": {"a": (0, 10), "b": (0, 10)}, "v1": {"a": (0, 10), "b": (20, 30)},
               "v2": {"a": (0, 10), "b": (20, 30), "c": (20, 30)}}
    chosen, r1 = choose_example(_ScriptedGrounder(answers), tmp_path)
    assert chosen[0] == "v1" and chosen[2] == [1.0, 1.0]
    assert r1 == 6 / 7  # every query but v2's "c" is grounded at IoU >= 0.5 (v0's "b": 8/10)
    answers["v1"]["b"] = (0, 10)  # now no video has distinct answers: the first one that hits wins
    assert choose_example(_ScriptedGrounder(answers), tmp_path)[0][0] == "v0"
    answers["v0"]["b"] = answers["v1"]["b"] = (12, 14)  # misses both ground truths
    assert choose_example(_ScriptedGrounder(answers), tmp_path)[0] is None


def test_building_the_demo_outside_a_clone_is_one_line(tmp_path, capsys):
    from g2l.cli import build_demo_main

    assert build_demo_main(["--repo", str(tmp_path), "--work-dir", str(tmp_path / "work")]) == 2
    assert "configs/demo.yaml does not exist" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()
