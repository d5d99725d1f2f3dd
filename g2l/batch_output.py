"""The output file of a batch run (g2l/batch.py) and what keeps it safe: the lock that lets one run
at a time write it, the record beside it of what made it (``PREDS.jsonl.made-by.json``), and the
key at the start of each of its lines, which a resume reads without parsing the answers.

A file that has no such record, or a whole line that does not start with such a key, was not
written by ``g2l-ground --batch`` and is refused, never repaired; only a last line without its
newline (cut by a kill) is dropped, by the plan, under the lock.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from g2l.errors import G2LError, path_problem
from g2l.inference import Grounder, frame_encoder_name
from g2l.io import atomic, strict_json
from g2l.io.safe_files import NotRegularFile, open_regular, open_regular_file, read_text_file

MADE_BY_SUFFIX = ".made-by.json"  # PREDS.jsonl.made-by.json: what wrote PREDS.jsonl
MADE_BY_FORMAT = "g2l-ground --batch output, version 1"
UNBOUNDED_BYTES = 2**62  # open_regular_file's size bound, for files that are streamed
# How every output line starts (strict_json.dumps with its default separators); read from the first
# bytes of each line, so that resuming never parses an answer whole.
_ANSWER_KEY = re.compile(rb'\{"input_line": ([1-9][0-9]{0,17}), "input_sha256": "([0-9a-f]{64})"[,}]')
_KEY_BYTES = 128  # enough for the above


class BatchError(G2LError):
    """The pairs file or the output file cannot be used at all."""


def made_by_path(out_path: str | Path) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + MADE_BY_SUFFIX)


def lock_path(out_path: str | Path) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(f".{out_path.name}.lock")


def hold_lock(out_path: Path) -> int | None:
    path = lock_path(out_path)
    return atomic.hold_lock(path, error=BatchError, fix=", or pick another --out",
                            busy=f"output {out_path} is being written by another g2l-ground --batch run (it holds "
                                 f"{path}); wait for that run to end, or pick another --out")


def read_answer_keys(handle: BinaryIO, out_path: Path, mark: Callable[[int, str], None]) -> int:
    """Stream the output: ``mark(input_line, input_sha256)`` for each of its lines; returns where a
    last line cut by a kill (one without its newline) starts, or the file's size when none is."""
    number, offset = 0, 0
    while True:
        head = handle.readline(_KEY_BYTES)
        if not head:
            return offset
        number, start, tail = number + 1, offset, head
        offset += len(head)
        while not tail.endswith(b"\n"):
            tail = handle.readline(1 << 20)
            offset += len(tail)
            if not tail:
                return start  # a cut last line
        key = _ANSWER_KEY.match(head)
        if key is None:
            raise BatchError(f"output {out_path} has a line ({number}) that g2l-ground --batch did not write; move "
                             "the file away or pick another --out")
        mark(int(key[1]), key[2].decode())


def read_made_by(out_path: Path) -> dict:
    path = made_by_path(out_path)
    refuse = (f"output {out_path} was not written by g2l-ground --batch (or by an older version): {path} "
              "{why}; move the output away or pick another --out")
    problem = path_problem(path)
    if problem:
        raise BatchError(refuse.format(why=problem))
    try:
        record = strict_json.loads(read_text_file(path, what=str(path), max_bytes=1 << 20))
    except (OSError, ValueError) as error:  # UnsafeFileError is a ValueError
        raise BatchError(refuse.format(why=f"cannot be read ({str(error)[:200]})")) from None
    if not isinstance(record, dict) or record.get("format") != MADE_BY_FORMAT:
        raise BatchError(refuse.format(why="is not such a record"))
    return record


def open_output_to_read(out_path: Path) -> tuple[BinaryIO | None, dict | None]:
    """The output opened for reading (None when it does not exist yet) and its record of what wrote
    it (None when it is empty); refuses an output that is not a regular file, or not g2l's."""
    problem = path_problem(out_path)
    if problem is not None:
        if problem.endswith("does not exist") and not out_path.is_symlink():
            return None, None
        raise BatchError(f"output {out_path} {problem}; pass a file path for the answers")
    try:
        handle = open_regular_file(out_path, what=f"output {out_path}", max_bytes=UNBOUNDED_BYTES)
    except OSError as error:
        raise BatchError(f"output {out_path} cannot be read ({error.strerror or error}); pick another --out") from None
    try:
        try:
            empty = handle.read(1) == b""  # not st_size: /proc files say 0 and are not empty
            handle.seek(0)
        except OSError as error:
            raise BatchError(f"output {out_path} cannot be read ({error.strerror or error}); "
                             "pick another --out") from None
        return handle, None if empty else read_made_by(out_path)
    except BaseException:
        handle.close()
        raise


_OPTION_NAMES = {"top_k": "--top-k", "window_s": "--window", "explain": "--explain",
                 "explain_target": "--explain-target", "seed": "--seed", "precision": "the precision"}
_MODEL_NAMES = {"weights_sha256": "other model weights", "config_sha256": "another model config",
                "frame_encoder": "another frame encoder"}


def made_by(grounder: Grounder, *, top_k: int, window_s: float | None, explain: bool, explain_target: str,
            seed: int) -> dict:
    """The record kept beside an output (``made_by_path``): what its answers depend on. The model by
    its content (a SHA-256 of every weight, names, dtypes and shapes included, and of its config), so
    that a checkpoint file and the folder ``g2l-export`` made of it are the same model; the frame
    encoder; and the options that change answers (the explanation's target and seed only with
    ``explain``, the precision as resolved on this machine)."""
    import torch

    from g2l.engine.precision import autocast_dtype

    weights = hashlib.sha256()
    for name, tensor in sorted(grounder.model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        weights.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        weights.update(tensor.view(torch.uint8).numpy())
    config = strict_json.dumps(dataclasses.asdict(grounder.cfg), sort_keys=True, default=str)
    spec = grounder.frame_encoder_spec
    encoder = getattr(grounder, "_frame_encoder_name", None) or (frame_encoder_name(spec) if spec else None)
    precision = "bf16" if autocast_dtype(grounder.precision, grounder.device) == torch.bfloat16 else "fp32"
    return {
        "format": MADE_BY_FORMAT,
        "model": {"weights_sha256": weights.hexdigest(), "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
                  "frame_encoder": {"name": encoder, "spec": spec}},
        "options": {"top_k": top_k, "window_s": window_s, "explain": explain,
                    "explain_target": explain_target if explain else None, "seed": seed if explain else None,
                    "precision": precision},
    }


def check_made_by(out_path: Path, recorded: dict | None, record: dict) -> None:
    """Refuse to add the answers ``record`` describes to an output that other settings made
    (``recorded``, from ``read_made_by``); record them beside a new (or empty) output (``recorded``
    None), before its first line."""
    record = strict_json.loads(strict_json.dumps(record))  # as it reads back
    if recorded is None:
        try:
            atomic.write_text_atomic(made_by_path(out_path), strict_json.dumps(record, indent=2) + "\n")
        except OSError as error:
            raise BatchError(f"{made_by_path(out_path)} cannot be written ({error.strerror or error}); "
                             "pick another --out") from None
        return
    old_model, old_options, options = recorded.get("model") or {}, recorded.get("options") or {}, record["options"]
    differs = [what for key, what in _MODEL_NAMES.items() if old_model.get(key) != record["model"][key]]
    differs += [f"{flag} {_shown(old_options.get(key))} (now {_shown(options[key])})"
                for key, flag in _OPTION_NAMES.items() if old_options.get(key) != options[key]
                and not (key in ("explain_target", "seed") and old_options.get("explain") != options["explain"])]
    if differs:
        raise BatchError(f"output {out_path} was made with other settings ({'; '.join(differs)}; see "
                         f"{made_by_path(out_path).name}); resume it with the same checkpoint and options, or "
                         "pick another --out")


def _shown(value) -> str:
    return "off" if value is False else "on" if value is True else "none" if value is None else str(value)


def open_output_to_append(out_path: Path):
    """The output, opened to append (created if missing; a link the user named is followed, as the
    plan checked it): a regular file only, never waiting on a FIFO (``g2l.io.safe_files.open_regular``)."""
    try:
        fd = open_regular(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666, follow_links=True)
    except NotRegularFile:  # a device put there since the plan
        raise BatchError(f"output {out_path} is not a regular file; pick another --out") from None
    except OSError as error:
        raise BatchError(f"output {out_path} cannot be opened ({error.strerror or error}); "
                         "pick another --out") from None
    return os.fdopen(fd, "a", encoding="utf-8")
