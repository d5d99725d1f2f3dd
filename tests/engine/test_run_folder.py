"""What a killed run leaves behind, and that it resumes. tools/train.py is killed at chosen points
as ``kill -9`` would kill it, through the test-only hook G2L_TEST_CRASH_AT (g2l/crash_points.py)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from g2l.cli import train_main
from g2l.engine.checkpoint import load_checkpoint
from tests.fixtures import tiny_overrides, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[2]
# Settings under which the tiny benchmark's mIoU improves after epoch 1, so that best.pt is replaced.
LEARNING = {"train.lr": 5e-3, "train.freeze_text_epochs": 4, "loss.only_iou_epoch": 9, "train.milestones": "[9]",
            "eval.best_metric": "mIoU"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_text_encoder_dir):
    return write_tiny_benchmark(tmp_path_factory.mktemp("bench")), tiny_text_encoder_dir


def train_until_killed(bench, out: Path, point: str, **extra) -> Path:
    """Run tools/train.py into ``out/run`` and kill it at crash point ``point``."""
    args = tiny_overrides(*bench, out, **{"log.run_name": "run", **extra})
    proc = subprocess.run([sys.executable, "tools/train.py", "--config", "configs/base.yaml", *args], cwd=REPO,
                          env=dict(os.environ, G2L_TEST_CRASH_AT=point), capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, f"not killed at {point}: {proc.stderr[-2000:]}"
    return out / "run"


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_kill_between_the_checkpoint_writes_leaves_best_and_last_consistent(bench, tmp_path):
    run = train_until_killed(bench, tmp_path, "between-checkpoints#2", **LEARNING, **{"train.epochs": 3})
    assert train_main(["--resume", str(run)]) == 0
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 3
    assert best["epoch"] >= 2 and best["epoch"] == last["best"]["epoch"] and best["best"] == last["best"]
    logged = {record["epoch"]: record for record in read_metrics(run)}
    assert sorted(logged) == [1, 2, 3]
    assert logged[best["epoch"]]["eval/mIoU"] == best["best"]["mIoU"]
