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
from g2l.engine.run_dir import lock_run_dir
from g2l.models.checkpoint import load_checkpoint
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


# Run folders damaged or planted with links: resume refuses each in one line (exit 2), writes nothing
# through a link and creates nothing outside the folder, and never waits on a FIFO.


@pytest.fixture()
def deadline():
    def expired(signum, frame):
        raise TimeoutError("resume waited on a FIFO instead of refusing it")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _metrics_line(run: Path, epoch) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["epoch"] = epoch
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n" + "\n".join(lines) + "\n")


def _shared_lists(levels: int = 30):
    value = ["lol"]
    for _ in range(levels):
        value = [value] * 10
    return value


def _craft_last(run: Path, change) -> None:
    import torch

    path = run / "checkpoints" / "last.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    change(payload)
    torch.save(payload, path)


def _plant(run: Path, outside: Path, case: str) -> Path:
    """Damage ``run`` as ``case`` says; returns the path outside the run folder that must stay untouched."""
    fifo = outside / "fifo"
    if case == "epoch-string":
        _metrics_line(run, "1")
    elif case == "epoch-null":
        _metrics_line(run, None)
    elif case == "base_lr-string":
        _craft_last(run, lambda p: p["optimizer"]["param_groups"][0].update(base_lr="0.1"))
    elif case == "lr-list":
        _craft_last(run, lambda p: p["optimizer"]["param_groups"][1].update(lr=[1e-4]))
    elif case == "moment-shape":
        _craft_last(run, lambda p: p["optimizer"]["state"][0].update(exp_avg=p["optimizer"]["state"][0]["exp_avg"][:1]))
    elif case == "config-shared":
        _craft_last(run, lambda p: p["config"]["data"].update(name=_shared_lists()))
    elif case == "lock-fifo":
        os.mkfifo(fifo)
        (run / ".lock").unlink(missing_ok=True)
        os.symlink(fifo, run / ".lock")
    elif case == "lock-missing":
        (run / ".lock").unlink(missing_ok=True)
        os.symlink(outside / "created-by-g2l", run / ".lock")
    elif case in ("checkpoints-link", "predictions-link"):
        name = case.split("-")[0]
        shutil.copytree(run / name, outside / name)
        shutil.rmtree(run / name)
        os.symlink(outside / name, run / name)
    elif case == "wandb-link":
        (outside / "wandb").mkdir()
        os.symlink(outside / "wandb", run / "wandb")
    elif case == "last-fifo":
        (run / "checkpoints" / "last.pt").unlink()
        os.mkfifo(run / "checkpoints" / "last.pt")
    elif case == "metrics-link":
        os.replace(run / "metrics.jsonl", outside / "metrics.jsonl")
        os.symlink(outside / "metrics.jsonl", run / "metrics.jsonl")
    return outside


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_fifo() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case, fragment", [
    ("epoch-string", "metrics.jsonl, line 1 has an epoch that is not a whole number ('1')"),
    ("epoch-null", "metrics.jsonl, line 1 has an epoch that is not a whole number (None)"),
    ("base_lr-string", "malformed optimizer state (group 'main' has base_lr = '0.1', not a number"),
    ("lr-list", "malformed optimizer state (group 'text' has lr = [0.0001], not a number"),
    ("moment-shape", "its optimizer or random-number state does not fit this model"),
    ("config-shared", "holds a config this version cannot read (config key 'data.name' must be a string, got [[[["),
    ("lock-fifo", "the lock file {run}/.lock is a symbolic link (to {outside}/fifo)"),
    ("lock-missing", "the lock file {run}/.lock is a symbolic link (to {outside}/created-by-g2l)"),
    ("checkpoints-link", "{run}/checkpoints is a symbolic link (to {outside}/checkpoints), which training would write"),
    ("predictions-link", "{run}/predictions is a symbolic link (to {outside}/predictions), which training would write"),
    ("wandb-link", "{run}/wandb is a symbolic link (to {outside}/wandb), which training would write"),
    ("last-fifo", "{run}/checkpoints/last.pt is not a checkpoint file; if the run should start again"),
    ("metrics-link", "{run}/metrics.jsonl is a symbolic link (to {outside}/metrics.jsonl)"),
])
def test_a_damaged_or_linked_run_folder_is_refused_in_one_line(finished_run, tmp_path, capsys, deadline, case, fragment):
    run = copy_run(finished_run, tmp_path / "run")
    (tmp_path / "outside").mkdir()
    outside = _plant(run, tmp_path / "outside", case)
    before = _snapshot(outside)
    assert train_main(["--resume", str(run), "train.epochs=2"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after what loading the data printed, for the metrics cases
    assert "Traceback" not in err and err.count("error:") == 1 and last.startswith("error: ") and len(last) < 400, err
    assert fragment.format(run=run, outside=outside) in last, err
    assert _snapshot(outside) == before  # nothing written, created or truncated outside the run folder
    if not case.startswith("epoch"):
        assert [r["epoch"] for r in read_metrics(run)] == [1]


def test_missing_subfolders_of_a_run_are_made_again_on_resume(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    shutil.rmtree(run / "predictions")
    assert train_main(["--resume", str(run), "train.epochs=2"]) == 0
    assert (run / "predictions").is_dir() and not (run / "predictions").is_symlink()
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
