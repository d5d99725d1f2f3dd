"""The run folder: resolved config, metrics.jsonl, predictions, checkpoints, W&B files.

    runs/<name>/
      config.yaml            the resolved config
      metrics.jsonl          one JSON object per evaluation (and the training-loss means)
      predictions/<split>_epoch<NNN>.jsonl
      checkpoints/last.pt    after every epoch
      checkpoints/best.pt    the epoch with the best eval.best_metric
      wandb/                 the W&B run (offline runs sync later with `wandb sync runs/<name>/wandb/offline-run-*`)
      .lock                  locked while a process trains into the folder
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO

from g2l import strict_json
from g2l.atomic import unwritable_reason

LOCK_FILE = ".lock"  # held (flock) by the process training into the folder

from g2l.errors import G2LError


class RunDirError(G2LError):
    """A run folder that cannot be created or resumed; the message says what to do."""


def plan_run_dir(output_dir: str, run_name: str, data_name: str) -> Path:
    """The new run's folder ``output_dir/run_name`` (default name ``<data_name>-<YYYYmmdd-HHMMSS>``),
    checked not to exist yet; nothing is created."""
    problem = unwritable_reason(output_dir, folder=True)
    if problem:
        raise RunDirError(f"log.output_dir {output_dir} {problem}; set log.output_dir to a folder you can write to")
    name = run_name or f"{data_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(output_dir) / name
    if path.exists():
        raise RunDirError(
            f"run folder {path} already exists; pass --resume {path} to continue it, or set log.run_name to a new name"
        )
    return path


def create_run_dir(path: Path) -> Path:
    """Create the planned folder; another run that created it first (same log.run_name, started at
    the same time) is a RunDirError, not a race."""
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        raise RunDirError(
            f"run folder {path} was just created by another run; pass --resume {path} to continue it, "
            "or set log.run_name to a new name"
        ) from None
    (path / "checkpoints").mkdir()
    (path / "predictions").mkdir()
    return path


def lock_run_dir(path: Path) -> IO | None:
    """Hold an exclusive lock on the run folder while the returned file stays open, so that two
    processes never train into one folder; the second gets a RunDirError. (No lock where the
    platform has no flock.)"""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(Path(path) / LOCK_FILE, "a")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunDirError(
            f"run folder {path} is in use by another training process; wait for it to finish (or stop it) "
            "before resuming"
        ) from None
    return handle


def resume_checkpoint_path(run_dir: str | Path) -> Path | None:
    """``checkpoints/last.pt`` of the run to resume, or None when the run stopped before its first
    epoch ended (its ``config.yaml`` then starts it again from epoch 1)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunDirError(f"cannot resume: run folder {run_dir} does not exist")
    if not run_dir.is_dir():
        raise RunDirError(
            f"cannot resume: {run_dir} is a file, not a run folder; pass the run's folder (runs/<name>, "
            "the one holding config.yaml and checkpoints/)"
        )
    path = run_dir / "checkpoints" / "last.pt"
    if path.is_file():
        return path
    if (run_dir / "config.yaml").is_file():
        return None
    raise RunDirError(
        f"cannot resume: {run_dir} holds neither checkpoints/last.pt nor config.yaml; if it is a run that was "
        "stopped while its folder was being created, delete the folder and start the run again"
    )


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(strict_json.dumps(record) + "\n")
        handle.flush()
