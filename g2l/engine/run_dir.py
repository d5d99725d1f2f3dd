"""The run folder: resolved config, metrics.jsonl, predictions, checkpoints, W&B files.

    runs/<name>/
      config.yaml            the resolved config
      metrics.jsonl          one JSON object per evaluation (and the training-loss means)
      predictions/<split>_epoch<NNN>.jsonl
      checkpoints/last.pt    after every epoch
      checkpoints/best.pt    the epoch with the best eval.best_metric
      wandb/                 the W&B run (offline runs sync later with `wandb sync runs/<name>/wandb/offline-run-*`)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from g2l.errors import G2LError


class RunDirError(G2LError):
    """A run folder that cannot be created or resumed; the message says what to do."""


def plan_run_dir(output_dir: str, run_name: str, data_name: str) -> Path:
    """The new run's folder ``output_dir/run_name`` (default name ``<data_name>-<YYYYmmdd-HHMMSS>``),
    checked not to exist yet; nothing is created."""
    name = run_name or f"{data_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(output_dir) / name
    if path.exists():
        raise RunDirError(
            f"run folder {path} already exists; pass --resume {path} to continue it, or set log.run_name to a new name"
        )
    return path


def create_run_dir(path: Path) -> Path:
    (path / "checkpoints").mkdir(parents=True)
    (path / "predictions").mkdir()
    return path


def resume_checkpoint_path(run_dir: str | Path) -> Path:
    path = Path(run_dir) / "checkpoints" / "last.pt"
    if not Path(run_dir).is_dir():
        raise RunDirError(f"cannot resume: run folder {run_dir} does not exist")
    if not path.is_file():
        raise RunDirError(f"cannot resume: {run_dir} has no checkpoints/last.pt (it stopped before its first epoch ended)")
    return path


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
