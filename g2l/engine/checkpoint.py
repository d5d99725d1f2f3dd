"""Checkpoints: atomic to write, safe to load (``weights_only=True``: no code runs), self-describing.

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

import math
import os
import random
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from g2l.atomic import atomic_path
from g2l.errors import G2LError

FORMAT = "g2l-checkpoint"
TEXT_BACKBONE_PREFIX = "text_encoder.backbone."
ZERO_ROWS = "g2l-zero-rows"  # marks an optimizer tensor stored without its all-zero rows


class CheckpointError(G2LError):
    """A checkpoint that cannot be read or does not fit; the message says why and what to do."""


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    *,
    model,
    cfg,
    optimizer=None,
    epoch: int = 0,
    global_step: int = 0,
    best: dict | None = None,
    include_rng: bool = True,
    include_text_backbone: bool = True,
    frame_encoder: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
    from g2l.config import config_to_dict
    from g2l.models.text_encoder import text_backbone_files

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if not include_text_backbone:
        state = {k: v for k, v in state.items() if not k.startswith(TEXT_BACKBONE_PREFIX)}
    payload = {
        "format": FORMAT,
        "version": 1,
        "config": config_to_dict(cfg),
        "model": state,
        "text_backbone": text_backbone_files(model.text_encoder.backbone, model.tokenizer) if include_text_backbone else None,
        "frame_encoder": frame_encoder,
        "epoch": epoch,
        "global_step": global_step,
        "best": best or {},
        "optimizer": pack_zero_rows(optimizer.state_dict()) if optimizer is not None else None,
        "rng": rng_state() if include_rng else None,
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def save_payload(path: str | Path, payload: dict) -> Path:
    """Write a loaded (and amended) checkpoint payload atomically."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
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


def write_portable_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Copy a run's checkpoint as a file to ship: the same weights, its config without the paths of
    the machine that trained it (``g2l.config.portable_config_dict``), no W&B run id, atomically."""
    from g2l.config import portable_config_dict

    payload = load_checkpoint(source)
    payload["config"] = portable_config_dict(payload["config"])
    payload["extra"] = {k: v for k, v in (payload.get("extra") or {}).items() if k != "wandb_id"}
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return Path(target)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint without executing code; a bad file is a CheckpointError. The file must
    be a regular file (a link to one is fine) within the size bounds of g2l/limits.py, its zip
    members are sized before ``torch.load`` reads them, and its weights are checked after."""
    from g2l.limits import MAX_WEIGHTS_BYTES, check_zip_members
    from g2l.safe_files import open_regular_file

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
    check_untrusted_fields(payload, f"checkpoint {path}")
    return payload


def check_untrusted_fields(payload: dict, source: str) -> None:
    """A checkpoint is data from anywhere: every field that g2l later turns into files, imports or
    names must have the expected shape, or the whole checkpoint is refused before anything is built."""
    from g2l.limits import check_model_sizes, check_state_tensors, check_text_sizes
    from g2l.models.text_encoder import TextEncoderError, check_text_backbone_spec

    if not isinstance(payload.get("config"), dict) or not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"{source} has no config or model weights inside; it is not a complete g2l checkpoint")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["model"].items()):
        raise CheckpointError(f"{source} has model weights that are not all named tensors; it is not a g2l checkpoint or is corrupt")
    check_state_tensors(payload["model"], source)
    model, data = payload["config"].get("model"), payload["config"].get("data")
    if isinstance(model, dict) and isinstance(data, dict):
        check_model_sizes(model, data, payload["model"], source)
    if payload.get("text_backbone") is not None:
        try:
            check_text_backbone_spec(payload["text_backbone"], source)
        except TextEncoderError as error:
            raise CheckpointError(str(error)) from None
        check_text_sizes(payload["text_backbone"]["config"], payload["model"], TEXT_BACKBONE_PREFIX, source)
    best = payload.get("best", {})
    if not (isinstance(best, dict) and len(best) <= 1024 and all(isinstance(k, str) and len(k) <= 256 and _plain(v)
                                                                 for k, v in best.items())):
        raise CheckpointError(f"{source} has malformed metrics (best: not a mapping of names to numbers); it is "
                              "not a g2l checkpoint or is corrupt")
    frame = payload.get("frame_encoder")
    if frame is not None and not (  # a spec of a few short values (frame_encoders.py's spec): never walked deep
        isinstance(frame, dict) and len(frame) <= 64 and all(
            isinstance(k, str) and len(k) <= 256 and (_plain(v) or (isinstance(v, list) and len(v) <= 64
                                                                    and all(_plain(item) for item in v)))
            for k, v in frame.items())
    ):
        raise CheckpointError(f"{source} has a malformed frame_encoder entry; it is not a g2l checkpoint or is corrupt")
    match = payload.get("match")
    if match is not None and not (isinstance(match, dict) and len(match) <= 32 and _real(match.get("threshold"))
                                  and all(isinstance(k, str) and len(k) <= 256 and _plain(v) for k, v in match.items())):
        raise CheckpointError(f"{source} has a malformed match entry (a threshold and a few values); it is not a g2l "
                              "checkpoint or is corrupt")
    if payload.get("domain") is not None:
        from g2l.data.domain import summary_problem

        width = data.get("feature_dim") if isinstance(data, dict) else None
        problem = summary_problem(payload["domain"], width if isinstance(width, int) else None)
        if problem:
            raise CheckpointError(f"{source} has a malformed domain summary ({problem}); it is corrupt, or drop "
                                  "the entry (payload['domain']) and fit it again")


def _plain(value) -> bool:
    """A short scalar: what a spec or a metric holds (a string of a few kB at most)."""
    return value is None or isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 4096)


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


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _malformed_param_groups(groups) -> str:
    """What is wrong with an optimizer's saved ``param_groups`` (g2l/engine/optim.py's AdamW groups:
    a name, finite learning rates, betas, eps and weight decay), or "" when nothing is; read before
    the first step, which would otherwise fail on them deep inside (``"0.1" * factor``)."""
    from g2l.config import quote

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


def load_model_state(model, state: dict, source: str) -> None:
    """Load ``state`` into ``model``, first checking every shape; a mismatch names the keys."""
    own = model.state_dict()
    text_omitted = not any(k.startswith(TEXT_BACKBONE_PREFIX) for k in state)
    expected = {k for k in own if not (text_omitted and k.startswith(TEXT_BACKBONE_PREFIX))}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        details = "; ".join(
            part for part in [
                f"shapes differ: {', '.join(mismatched[:3])}" if mismatched else "",
                f"missing: {', '.join(missing[:3])}" if missing else "",
                f"unexpected: {', '.join(unexpected[:3])}" if unexpected else "",
            ] if part
        )
        raise CheckpointError(
            f"checkpoint {source} was saved from a model of another shape ({details}); "
            "use the config it was trained with, or a checkpoint of this model"
        )
    model.load_state_dict(state, strict=not text_omitted)


def model_from_checkpoint(payload: dict, source: str, overrides: list[str] | None = None):
    """``(model, cfg)`` from a loaded checkpoint; the text encoder is rebuilt without network when
    its files travel inside. ``overrides`` (dotted) may change data paths and evaluation settings."""
    from g2l.config import ConfigError, apply_overrides, config_from_dict
    from g2l.limits import check_model_sizes
    from g2l.models.grounding import build_model

    try:
        cfg = config_from_dict(payload["config"])
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {source} holds a config this version cannot read ({error})") from None
    apply_overrides(cfg, overrides or [])
    check_model_sizes(asdict(cfg.model), asdict(cfg.data), payload["model"], source)  # overrides too, before building
    model = build_model(cfg, text_spec=payload.get("text_backbone"), source=f"checkpoint {source}", for_checkpoint=True)
    load_model_state(model, payload["model"], source)
    return model, cfg
