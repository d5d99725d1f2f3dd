"""Checkpoint files: atomic to write, safe to read (``weights_only=True``: no code runs), self-describing.

This module reads and writes the file; g2l/models/checkpoint.py checks what it holds and builds the
model from it (``load_checkpoint``, ``save_checkpoint``, ``model_from_checkpoint``).

A checkpoint is a dict::

    format: "g2l-checkpoint", version: 1
    config: the resolved config (plain dict)
    model: the model's state dict (text backbone weights omitted when ``include_text_backbone``
           is False: then the backbone is rebuilt from ``config.model.text_encoder``)
    text_backbone: {"config": HF config dict, "tokenizer_files": {name: text}} to rebuild the text
           encoder with no network
    frame_encoder: the spec of the frame encoder the features came from, or None
    epoch, global_step, best: training progress; optimizer and rng: to resume exactly
           (last.pt only; the optimizer's all-zero rows are left out: ``pack_zero_rows``)
    match: (optional) the threshold on a query's best score that decides "its answer is here",
           with how it was fitted (g2l/eval/match.py), or absent
    domain: (optional) what the training videos' frame features looked like (a mean, a 4-component
           PCA basis, variances and a distance threshold, a few kB; g2l/data/domain.py), or absent

What that weighs, measured on the synthetic Charades config (MiniLM text encoder, fine-tuned):
the model 94.0 MB (the text backbone 90.9 MB of it, its word embeddings 46.9 MB; the grounding
layers 3.2 MB), the tokenizer files 0.7 MB, the config and rng a few kB, and in last.pt AdamW's
two moments of every trained weight, 186.6 MB, of which 95.2 MB are the rows of the word
embeddings that no token of the training sentences ever reached (all zero): stored without them,
last.pt is 187 MB instead of 282 MB; best.pt (no optimizer, no rng) 95 MB.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from g2l.errors import G2LError
from g2l.io.atomic import atomic_path
from g2l.io.limits import MAX_WEIGHTS_BYTES, check_zip_members
from g2l.io.safe_files import open_regular, open_regular_file

FORMAT = "g2l-checkpoint"
TEXT_BACKBONE_PREFIX = "text_encoder.backbone."
ZERO_ROWS = "g2l-zero-rows"  # marks an optimizer tensor stored without its all-zero rows


class CheckpointError(G2LError):
    """A checkpoint that cannot be read or does not fit; the message says why and what to do."""


def save_payload(path: str | Path, payload: dict) -> Path:
    """Write a loaded (and amended) checkpoint payload atomically. Through a file object, so the zip's
    folder is torch's fixed "archive", not the temporary file's name: the same payload gives the same
    bytes (and SHA-256) on every write."""
    with atomic_path(path) as tmp, os.fdopen(open_regular(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as handle:
        torch.save(payload, handle)  # the temporary atomic_path made, never through a link planted since
    return Path(path)


def pack_zero_rows(optimizer_state: dict) -> dict:
    """An optimizer ``state_dict`` whose per-parameter tensors of two or more dimensions (Adam's
    moments) are stored without the rows that are zero in all of them, when at least half are:
    ``{"packed": ZERO_ROWS, "shape": [...], "rows": (r,) int64, "values": (r ...)}``. Lossless
    (``unpack_zero_rows`` puts the zeros back); it drops the word embeddings' untouched rows."""
    state = {}
    for index, entry in optimizer_state["state"].items():
        tensors = {k: v for k, v in entry.items() if isinstance(v, torch.Tensor) and v.dim() >= 2}
        if tensors and len({v.shape for v in tensors.values()}) == 1:
            used = torch.stack([(v.reshape(v.shape[0], -1) != 0).any(dim=1) for v in tensors.values()]).any(dim=0)
            rows = used.nonzero().flatten()  # (r,)
            if 2 * rows.numel() <= used.numel():
                entry = {**entry, **{k: {"packed": ZERO_ROWS, "shape": list(v.shape), "rows": rows, "values": v[rows]}
                                     for k, v in tensors.items()}}
        state[index] = entry
    return {**optimizer_state, "state": state}


def unpack_zero_rows(optimizer_state: dict, params: list) -> dict:
    """``pack_zero_rows`` undone, for the optimizer whose parameters (in ``param_groups`` order)
    are ``params``; a packed entry that does not fit its parameter raises ``ValueError``."""
    if not isinstance(optimizer_state.get("state"), dict):
        raise ValueError("an optimizer state that is not a mapping")
    state = {}
    for index, entry in optimizer_state["state"].items():
        if isinstance(entry, dict) and any(isinstance(v, dict) for v in entry.values()):
            if not (isinstance(index, int) and 0 <= index < len(params)):
                raise ValueError("a packed moment of no parameter")
            shape, entry = params[index].shape, dict(entry)
            for key, packed in entry.items():
                if not isinstance(packed, dict):
                    continue
                rows, values = packed.get("rows"), packed.get("values")
                if not (packed.get("packed") == ZERO_ROWS and packed.get("shape") == list(shape)
                        and isinstance(rows, torch.Tensor) and rows.dtype == torch.int64 and rows.dim() == 1
                        and isinstance(values, torch.Tensor) and values.shape == (len(rows), *shape[1:])
                        and (len(rows) == 0 or (int(rows.min()) >= 0 and int(rows.max()) < shape[0]))):
                    raise ValueError("a packed moment that does not fit its parameter")
                full = torch.zeros(shape, dtype=values.dtype)
                full[rows] = values
                entry[key] = full
        state[index] = entry
    return {**optimizer_state, "state": state}


def read_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file without executing code; a bad file is a CheckpointError. The file must
    be a regular file (a link to one is fine) within the size bounds of g2l/io/limits.py, and its zip
    members are sized before ``torch.load`` reads them. What it holds is checked by the caller
    (``g2l.models.checkpoint.load_checkpoint`` checks every field before anything is built)."""

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass a checkpoint file (e.g. runs/<name>/checkpoints/best.pt)")
    try:
        file = open_regular_file(path, what=f"checkpoint {path}", max_bytes=MAX_WEIGHTS_BYTES)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist; check the path") from None
    with file:
        check_zip_members(file, os.fstat(file.fileno()).st_size, f"checkpoint {path}")
        try:
            payload = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
            # torch's own message suggests loading with weights_only=False, which would run the file's
            # code: it is never shown, only what it found.
            text = str(error)
            if "Weights only load failed" in text:
                found = re.search(r"GLOBAL (\S+)", text)
                what = f" ({found.group(1)})" if found else ""
                raise CheckpointError(
                    f"checkpoint {path} could not be loaded safely: it holds pickled Python objects{what}, which g2l "
                    "refuses (a g2l checkpoint holds only tensors and plain values); do not use this file"
                ) from None
            raise CheckpointError(
                f"checkpoint {path} could not be read: it is truncated or corrupt, or not a checkpoint; copy it again "
                "or use another"
            ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a g2l checkpoint (no 'format: {FORMAT}' inside)")
    return payload
