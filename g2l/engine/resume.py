"""Resuming a run folder: lock it, clear what killed writes left, read the config and the
checkpoint to continue from, drop metrics lines of epochs that will be redone, and decide which
epoch ``best.pt`` holds. The training loop (``g2l.train``) calls these when ``resume_dir`` is given;
the folder's layout is ``g2l.engine.run_dir``'s."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from g2l import strict_json
from g2l.atomic import remove_stale_temporaries, write_text_atomic
from g2l.config import Config, ConfigError, config_from_dict, load_config, quote
from g2l.engine import checkpoint as ckpt
from g2l.engine.logging import say
from g2l.engine.run_dir import SUBFOLDERS, RunDirError, lock_run_dir, resume_checkpoint_path
from g2l.safe_files import UnsafeFileError, open_regular_file

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
    payload = ckpt.load_checkpoint(last)
    ckpt.check_resumable(payload, str(last))
    try:
        return config_from_dict(payload["config"]), payload
    except ConfigError as error:
        raise ckpt.CheckpointError(f"checkpoint {last} holds a config this version cannot read ({error})") from None


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
        held = ckpt.load_checkpoint(path).get("best")
    except ckpt.CheckpointError as error:
        say(f"warning: {error}; the next epoch writes a new best.pt", main)
        return {}
    if not isinstance(held, dict) or not isinstance(held.get("epoch"), int):
        say(f"warning: {path} does not say which epoch it holds; the next epoch writes a new one", main)
        return {}
    if held != recorded:
        say(f"{path} holds epoch {held['epoch']} (last.pt recorded epoch {recorded.get('epoch')}); "
            "it stays the best until an epoch beats it", main)
    return held
