"""Resuming a run folder: lock it, clear what killed writes left, read the config and the
checkpoint to continue from, drop metrics lines of epochs that will be redone, and decide which
epoch ``best.pt`` holds. The training loop (``g2l.train``) calls these when ``resume_dir`` is given;
the folder's layout is ``g2l.engine.run_dir``'s. Also the training state a checkpoint carries: the
optimizer (``load_training_state``) and the random-number generators."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import math
import random
import re

import numpy as np
import torch

from g2l.config import Config, ConfigError, config_from_dict, load_config
from g2l.engine.logging import say
from g2l.engine.run_dir import SUBFOLDERS, RunDirError, lock_run_dir, resume_checkpoint_path
from g2l.errors import quote
from g2l.io import strict_json
from g2l.io.atomic import remove_stale_temporaries, write_text_atomic
from g2l.io.checkpoint import CheckpointError, unpack_zero_rows
from g2l.io.safe_files import UnsafeFileError, open_regular_file
from g2l.models.checkpoint import load_checkpoint

MAX_METRICS_BYTES = 256 * 2**20  # metrics.jsonl: a line per epoch, a few kB each


def load_resume_state(resume_dir: Path, main: bool, held: ExitStack) -> tuple[Config, dict | None]:
    """Lock the run folder (rank 0), clear what killed writes left, and read the config and the
    checkpoint to continue from: ``(cfg, payload)``, payload None when the run stopped before its
    first epoch ended and starts again from epoch 1."""
    last = resume_checkpoint_path(resume_dir)
    if main:
        lock = lock_run_dir(resume_dir)
        if lock is not None:
            held.enter_context(lock)
        for name in SUBFOLDERS:  # checked by resume_checkpoint_path: real folders, or missing
            (resume_dir / name).mkdir(exist_ok=True)
        stale = [p for folder in (resume_dir, resume_dir / "checkpoints", resume_dir / "predictions")
                 for p in remove_stale_temporaries(folder)]
        if stale:
            say(f"removed {len(stale)} temporary file(s) left by interrupted writes ({', '.join(p.name for p in stale)})")
    if last is None:
        say(f"{resume_dir} has no checkpoints/last.pt (it stopped before its first epoch ended): "
            "starting it again from epoch 1 with its config.yaml", main)
        return load_config(resume_dir / "config.yaml"), None
    payload = load_checkpoint(last)
    check_resumable(payload, str(last))
    try:
        return config_from_dict(payload["config"]), payload
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {last} holds a config this version cannot read ({error})") from None


def truncate_metrics(path: Path, last_epoch: int, main: bool) -> None:
    """Drop metrics lines of epochs after the checkpoint we resume from (a crash between the two),
    and a last line that a kill cut short."""
    if not path.is_file():
        return
    try:  # a regular file inside the run folder, of a bounded size (check_run_dir_entries refused a link)
        with open_regular_file(path, what=f"{path}", max_bytes=MAX_METRICS_BYTES, within=path.parent) as file:
            text = file.read(MAX_METRICS_BYTES).decode("utf-8", errors="replace")
    except UnsafeFileError as error:
        raise RunDirError(f"cannot resume: {error}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    kept = []
    for number, line in enumerate(lines, start=1):
        try:
            record = strict_json.loads(line)
        except ValueError:  # bad syntax, nesting too deep, an integer too long
            record = None
        if not isinstance(record, dict):
            if number == len(lines):
                say(f"{path}: dropping its last line, cut short when the run stopped", main)
                continue
            raise RunDirError(f"{path}, line {number} is not a JSON object; delete that line, then resume again")
        epoch = record.get("epoch", 0)
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise RunDirError(f"{path}, line {number} has an epoch that is not a whole number ({quote(epoch)}); "
                              "correct or delete that line, then resume again")
        if epoch <= last_epoch:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def best_on_disk(run_dir: Path, recorded: dict, main: bool) -> dict:
    """The best epoch so far as ``checkpoints/best.pt`` holds it, which may differ from what
    ``last.pt`` recorded: best.pt is written first, so a run killed between the two writes has a
    best.pt of the epoch about to be redone. Adopting best.pt's own record keeps the pair consistent
    (the redone epoch replaces best.pt only if it beats it, as an uninterrupted run would)."""
    path = run_dir / "checkpoints" / "best.pt"
    if not path.is_file():
        if recorded:
            say(f"warning: {path} is missing; the next epoch writes a new one", main)
        return {}
    try:
        held = load_checkpoint(path).get("best")
    except CheckpointError as error:
        say(f"warning: {error}; the next epoch writes a new best.pt", main)
        return {}
    if not isinstance(held, dict) or not isinstance(held.get("epoch"), int):
        say(f"warning: {path} does not say which epoch it holds; the next epoch writes a new one", main)
        return {}
    if held != recorded:
        say(f"{path} holds epoch {held['epoch']} (last.pt recorded epoch {recorded.get('epoch')}); "
            "it stays the best until an epoch beats it", main)
    return held


# The training state a checkpoint carries ---------------------------------------------------


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_resumable(payload: dict, source: str) -> None:
    """Training continues only from a checkpoint that carries the training state, as last.pt does
    (best.pt and checkpoints made for grounding hold no optimizer state)."""
    if not isinstance(payload.get("optimizer"), dict):
        raise CheckpointError(
            f"checkpoint {source} holds no optimizer state, so training cannot continue from it; resume only from "
            "the checkpoints/last.pt that training wrote (best.pt never holds one)"
        )
    bad_groups = _malformed_param_groups(payload["optimizer"].get("param_groups"))
    if bad_groups:
        raise CheckpointError(
            f"checkpoint {source} has a malformed optimizer state ({bad_groups}); it is corrupt or was not written by "
            "g2l training, resume from another run or start a new one"
        )
    epoch, step = payload.get("epoch"), payload.get("global_step")
    counts_ok = all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (epoch, step))
    rng, extra = payload.get("rng"), payload.get("extra", {})
    wandb_id = extra.get("wandb_id") if isinstance(extra, dict) else 0
    if (not counts_ok or not isinstance(payload.get("best"), dict) or not (rng is None or isinstance(rng, dict))
            or not (wandb_id is None or (isinstance(wandb_id, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,128}", wandb_id)))):
        raise CheckpointError(
            f"checkpoint {source} has a malformed training state (epoch, global_step, best, rng or W&B run id); "
            "it is corrupt or was not written by g2l training"
        )


def _malformed_param_groups(groups) -> str:
    """What is wrong with an optimizer's saved ``param_groups`` (g2l/engine/optim.py's AdamW groups:
    a name, finite learning rates, betas, eps and weight decay), or "" when nothing is; read before
    the first step, which would otherwise fail on them deep inside (``"0.1" * factor``)."""
    if not isinstance(groups, list) or not all(isinstance(group, dict) for group in groups):
        return "param_groups is not a list of groups"
    for index, group in enumerate(groups):
        if not isinstance(group.get("name"), str):
            return f"group {index} has no name"
        for key in ("lr", "base_lr", "eps", "weight_decay"):
            if not (_real(group.get(key)) and group[key] >= 0):
                return f"group {group['name'][:40]!r} has {key} = {quote(group.get(key))}, not a number of at least 0"
        betas = group.get("betas")
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(_real(b) and 0 <= b < 1 for b in betas)):
            return f"group {group['name'][:40]!r} has betas = {quote(betas)}, not two numbers in [0, 1)"
    return ""


def load_training_state(optimizer, payload: dict, source: str) -> None:
    """Restore the optimizer and random-number states of a ``check_resumable`` checkpoint."""
    try:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.load_state_dict(unpack_zero_rows(payload["optimizer"], params))
        for param, state in optimizer.state.items():  # Adam's moments have their parameter's shape
            for value in state.values():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError("a moment of another shape than its parameter")
        if payload.get("rng") is not None:
            set_rng_state(payload["rng"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise CheckpointError(
            f"checkpoint {source}: its optimizer or random-number state does not fit this model "
            f"({type(error).__name__}); it is corrupt, or was written by another version of g2l"
        ) from None
