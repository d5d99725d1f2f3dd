"""What a killed run leaves behind, and that it resumes. g2l-train is killed at chosen points as
``kill -9`` would kill it, through the test harness tests/crash_points.py (G2L_TEST_CRASH_AT)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from g2l.cli import train_main
from g2l.engine.checkpoint import load_checkpoint
from g2l.engine.run_dir import lock_run_dir
from tests.fixtures import tiny_overrides, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[2]
# Settings under which the tiny benchmark's mIoU improves after epoch 1, so that best.pt is replaced.
LEARNING = {"train.lr": 5e-3, "train.freeze_text_epochs": 4, "loss.only_iou_epoch": 9, "train.milestones": "[9]",
            "eval.best_metric": "mIoU"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_text_encoder_dir):
    return write_tiny_benchmark(tmp_path_factory.mktemp("bench")), tiny_text_encoder_dir


def train_until_killed(bench, out: Path, point: str, **extra) -> Path:
    """Run g2l-train (through tests/crash_points.py) into ``out/run`` and kill it at crash point ``point``."""
    args = tiny_overrides(*bench, out, **{"log.run_name": "run", **extra})
    proc = subprocess.run([sys.executable, "-m", "tests.crash_points", "--config", "configs/base.yaml", *args], cwd=REPO,
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


@pytest.fixture(scope="module")
def finished_run(bench, tmp_path_factory):
    """A run of one epoch, to copy and damage."""
    out = tmp_path_factory.mktemp("finished")
    assert train_main(["--config", "configs/base.yaml", *tiny_overrides(*bench, out, **{"log.run_name": "run",
                                                                                        "train.epochs": 1})]) == 0
    return out / "run"


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def test_a_run_killed_in_its_first_epoch_resumes_from_scratch_and_clears_killed_writes(bench, tmp_path):
    run = train_until_killed(bench, tmp_path, "before-rename:last.pt", **{"train.epochs": 2})
    stale = list((run / "checkpoints").glob(".last.pt.*.tmp"))
    assert len(stale) == 1 and not (run / "checkpoints" / "last.pt").exists()
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 2, "eval/R1')  # a line cut short
    assert train_main(["--resume", str(run)]) == 0
    assert not stale[0].exists()
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == last["best"]["epoch"]


def test_a_folder_with_only_its_config_is_started_again(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(finished_run / "config.yaml", run / "config.yaml")
    assert train_main(["--resume", str(run)]) == 0
    assert "starting it again from epoch 1" in capsys.readouterr().err
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    # It trains as the original run did.
    assert read_metrics(run)[0]["eval/mIoU"] == read_metrics(finished_run)[0]["eval/mIoU"]


def test_a_half_written_last_metrics_line_is_dropped_on_resume(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 2, "step": 6, "eval/R1@0.3": 0.06')
    assert train_main(["--resume", str(run), "train.epochs=2"]) == 0
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


def test_a_run_folder_in_use_is_refused_with_one_line(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    with lock_run_dir(run):  # as a training process holds it
        assert train_main(["--resume", str(run), "train.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "in use by another training process" in err and len(err.strip().splitlines()) == 1
    assert [r["epoch"] for r in read_metrics(run)] == [1]


def test_two_new_runs_of_one_name_do_not_race_to_a_traceback(bench, tmp_path, monkeypatch, capsys):
    import g2l.train as engine_train

    def build_while_another_run_starts(*args, **kwargs):
        (tmp_path / "run").mkdir(exist_ok=True)  # the other run creates the folder meanwhile
        return real_build(*args, **kwargs)

    real_build = engine_train.build_dataset
    monkeypatch.setattr(engine_train, "build_dataset", build_while_another_run_starts)
    args = tiny_overrides(*bench, tmp_path, **{"log.run_name": "run", "train.epochs": 1})
    assert train_main(["--config", "configs/base.yaml", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: run folder")
    assert "was just created by another run" in err
