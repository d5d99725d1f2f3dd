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

import os
import stat
import time
from pathlib import Path
from typing import IO

from g2l.errors import G2LError
from g2l.io import strict_json
from g2l.io.atomic import unwritable_reason
from g2l.io.safe_files import NotRegularFile, open_regular

LOCK_FILE = ".lock"  # held (flock) by the process training into the folder
SUBFOLDERS = ("checkpoints", "predictions")  # written by training: real folders inside the run folder
METRICS_FILE = "metrics.jsonl"


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


def _open_own_file(path: Path, flags: int, what: str) -> int:
    """A file of the run folder that must be a regular file there, never a link, opened by
    ``g2l.io.safe_files.open_regular`` (a link, even to a missing path outside, is neither followed
    nor created through; a FIFO does not hang the open)."""
    try:
        return open_regular(path, flags)
    except NotRegularFile as error:
        raise RunDirError(f"{what} {path} is not a regular file ({'a folder' if stat.S_ISDIR(error.mode) else 'a FIFO or a device'}); "
                          "g2l writes only its own files in a run folder, remove it and try again") from None
    except OSError as error:
        if os.path.islink(path):
            raise RunDirError(f"{what} {path} is a symbolic link (to {os.readlink(path)}); g2l writes only its own "
                              "files in a run folder, delete the link and try again") from None
        raise RunDirError(f"{what} {path} could not be opened ({error.strerror or error}); check the run folder's "
                          "permissions") from None


def lock_run_dir(path: Path) -> IO | None:
    """Hold an exclusive lock on the run folder while the returned file stays open, so that two
    processes never train into one folder; the second gets a RunDirError. The lock file is opened
    never through a link and only if it is a regular file (``_open_own_file``). (No lock where the
    platform has no flock.)"""
    try:
        import fcntl
    except ImportError:
        return None
    fd = _open_own_file(Path(path) / LOCK_FILE, os.O_RDONLY | os.O_CREAT, "the lock file")
    handle = os.fdopen(fd, "rb")  # held open for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunDirError(
            f"run folder {path} is in use by another training process; wait for it to finish (or stop it) "
            "before resuming"
        ) from None
    return handle


def check_run_dir_entries(run_dir: Path) -> None:
    """The entries of a run folder that training writes into are its own: ``checkpoints/``,
    ``predictions/`` and ``wandb/`` real folders (not links out of the run folder, which writes
    would follow), and ``metrics.jsonl`` a regular file, not a link. Missing ones are fine (they are
    made)."""
    for name in (*SUBFOLDERS, "wandb", METRICS_FILE):
        entry = run_dir / name
        try:
            mode = entry.lstat().st_mode
        except FileNotFoundError:
            continue
        except OSError as error:
            raise RunDirError(f"cannot resume: {entry} cannot be reached ({error.strerror or error})") from None
        wanted = stat.S_ISREG if name == METRICS_FILE else stat.S_ISDIR
        if stat.S_ISLNK(mode):
            raise RunDirError(
                f"cannot resume: {entry} is a symbolic link (to {os.readlink(entry)}), which training would write "
                f"through; g2l writes only inside the run folder, replace the link by a {'file' if name == METRICS_FILE else 'folder'}"
            )
        if not wanted(mode):
            raise RunDirError(f"cannot resume: {entry} is not a {'regular file' if name == METRICS_FILE else 'folder'}; "
                              "it is not a run folder g2l wrote, or it was damaged")


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
    check_run_dir_entries(run_dir)
    path = run_dir / "checkpoints" / "last.pt"
    if path.is_file():
        return path
    if path.is_symlink() or path.exists():  # a FIFO, a folder, a link to nothing: not a checkpoint to start over from
        raise RunDirError(f"cannot resume: {path} is not a checkpoint file; if the run should start again from "
                          "epoch 1, delete it, otherwise put the run's last.pt back")
    if (run_dir / "config.yaml").is_file():
        return None
    raise RunDirError(
        f"cannot resume: {run_dir} holds neither checkpoints/last.pt nor config.yaml; if it is a run that was "
        "stopped while its folder was being created, delete the folder and start the run again"
    )


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line to a file of the run folder (metrics.jsonl), never through a link."""
    fd = _open_own_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "the log file")
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(strict_json.dumps(record) + "\n")
        handle.flush()
