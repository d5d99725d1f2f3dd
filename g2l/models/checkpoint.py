"""A model and its checkpoint: what a checkpoint must hold before a model is built from it.

The file itself is read and written by g2l/io/checkpoint.py (atomic, no code executed; its layout
is described there). Here: ``save_checkpoint`` (a model, its config and the training state to a
payload), ``load_checkpoint`` (a file read by g2l/io, then every field checked), the checks of an
untrusted payload (weights that are plain finite tensors, the config's sizes within
g2l/config/bounds.py and agreeing with the weights, the text backbone's config within
``TEXT_CONFIG_BOUNDS`` and agreeing with its weights), and ``model_from_checkpoint``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from g2l.config import ConfigError, apply_overrides, config_from_dict, config_to_dict, portable_config_dict, size_limits
from g2l.config import MAX_POOLING_COUNTS
from g2l.errors import quote
from g2l.io.checkpoint import (
    FORMAT,
    TEXT_BACKBONE_PREFIX,
    CheckpointError,
    pack_zero_rows,
    read_checkpoint,
    save_payload,
)
from g2l.io.limits import MiB, SizeLimitError, check_state_tensors
from g2l.io.pretrained import CONFIG_NAME, WEIGHTS_NAME, download_repo, is_pretrained_folder, looks_like_repo_id, read_pretrained
from g2l.models.text_encoder import TextEncoderError, check_text_backbone_spec, text_backbone_files

# The text backbone's transformers config -----------------------------------------------------
TEXT_CONFIG_BOUNDS = {
    "vocab_size": 1_000_000,  # tokens (BERT 30,522; multilingual models up to 250,002)
    "num_hidden_layers": 256,  # transformer layers (BERT-large 24)
    "n_layers": 256, "num_layers": 256, "n_layer": 256,  # the same, other architectures' names
    "hidden_size": 16384,  # width (BERT-large 1,024)
    "dim": 16384, "d_model": 16384, "n_embd": 16384,
    "intermediate_size": 65536,  # feed-forward width (BERT-large 4,096)
    "hidden_dim": 65536, "ffn_dim": 65536, "n_inner": 65536,
    "num_attention_heads": 1024, "n_heads": 1024, "n_head": 1024,
    "max_position_embeddings": 131072,  # positions (BERT 512)
    "n_positions": 131072,
    "type_vocab_size": 1024,  # token types (BERT 2)
}
# The architectures whose parameter count ``_estimated_parameters`` knows (BERT's layout).
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet"}

_MAP_LAYER = re.compile(r"^map_encoder\.convs\.(\d+)\.")
_TEXT_LAYER = re.compile(r"\.(?:layer|layers)\.(\d+)\.")



# The sizes of g2l's model -----------------------------------------------------------------------------------


def _expected_shapes(model: dict, data: dict) -> dict[str, tuple]:
    h, k, j = model["hidden_dim"], model["map_kernel_size"], model["joint_dim"]
    shapes = {"video_encoder.proj.weight": (h, data["feature_dim"], 1), "video_encoder.proj.bias": (h,),
              "map_encoder.contrast_head.weight": (j, h, 1, 1), "map_encoder.iou_head.weight": (j, h, 1, 1)}
    for n in range(model["map_num_layers"]):
        shapes[f"map_encoder.convs.{n}.weight"] = (h, h, k, k)
        shapes[f"map_encoder.norms.{n}.weight"] = (h,)
    return shapes


def check_model_sizes(model: dict, data: dict, state: dict, source: str) -> None:
    """``model`` and ``data`` (the config's sections, as dicts) within bounds and agreeing with the
    weights of ``state``, before ``build_model``. Values that are not integers are left to the
    config's own type checks."""
    for section, values in (("model", model), ("data", data)):
        bounds = size_limits(section)
        for key, bound in bounds.items():
            value = values.get(key)
            if _int(value) and not 0 <= value <= bound:
                raise SizeLimitError(f"{source} has {section}.{key} = {quote(value)}, outside what g2l builds (0 to {bound}); "
                                     "it is crafted or corrupt, do not use it")
    counts = model.get("pooling_counts")
    if isinstance(counts, list) and (len(counts) > MAX_POOLING_COUNTS or any(
            _int(c) and _int(model.get("num_clips")) and not 0 <= c <= model["num_clips"] for c in counts)):
        raise SizeLimitError(f"{source} has a model.pooling_counts beyond its model.num_clips or of more than "
                             f"{MAX_POOLING_COUNTS} entries; it is crafted or corrupt, do not use it")
    layers = model.get("map_num_layers")
    if _int(layers):
        held = {int(m.group(1)) for key in state if (m := _MAP_LAYER.match(key))}
        if held != set(range(layers)):
            raise SizeLimitError(f"{source} has model.map_num_layers = {layers} but its weights hold {len(held)} map "
                                 "layers; the config and the weights do not belong together, do not use it")
    needed = ("hidden_dim", "map_kernel_size", "joint_dim", "map_num_layers")
    if all(_int(model.get(key)) for key in needed) and _int(data.get("feature_dim")):
        for key, shape in _expected_shapes(model, data).items():
            found = tuple(state[key].shape) if key in state else None
            if found != shape:
                what = "has no weight" if found is None else f"has the weight {key} of shape {found}"
                raise SizeLimitError(
                    f"{source} {what}{' ' + key if found is None else ''} where its config builds {shape}; the config "
                    "and the weights do not belong together, do not use it"
                )


# The text backbone -----------------------------------------------------------------------------


def _first(config: dict, *keys):
    return next((config[k] for k in keys if _int(config.get(k))), None)


def _estimated_parameters(config: dict) -> int:
    """A lower bound of a BERT-layout encoder's parameters: per layer the four attention matrices
    and the two feed-forward ones, and the word and position embeddings."""
    h = _first(config, "hidden_size") or 0
    inner = _first(config, "intermediate_size") or 4 * h
    layers = _first(config, "num_hidden_layers") or 0
    rows = (_first(config, "vocab_size") or 0) + (_first(config, "max_position_embeddings") or 0)
    return layers * (4 * h * h + 2 * h * inner) + rows * h


def check_text_sizes(config: dict, state: dict, prefix: str, source: str) -> None:
    """The text backbone's ``config`` within bounds and agreeing with its weights in ``state``
    (keys under ``prefix``): the vocabulary is the word embedding's rows, the layer count the
    layers held, and the parameters it builds no more than the weights present."""
    for key, bound in TEXT_CONFIG_BOUNDS.items():
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value <= bound:
            raise SizeLimitError(f"{source} has a text encoder with {key} = {quote(value)}, outside what g2l builds (0 to "
                                 f"{bound:,}); it is crafted or corrupt, do not use it")
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise SizeLimitError(f"{source} has a text encoder config but no text encoder weights; it is not a complete "
                             "g2l checkpoint")
    embedding = next((v for k, v in weights.items()
                      if k.endswith(("word_embeddings.weight", "embed_tokens.weight", "wte.weight")) and v.dim() == 2), None)
    vocab = _first(config, "vocab_size")
    if embedding is not None and vocab is not None and embedding.shape[0] != vocab:
        raise SizeLimitError(f"{source} has a text encoder with vocab_size = {vocab} but a word embedding of "
                             f"{embedding.shape[0]} rows; it is crafted or corrupt, do not use it")
    layers = _first(config, "num_hidden_layers", "n_layers", "num_layers", "n_layer")
    held = {int(m.group(1)) for k in weights if (m := _TEXT_LAYER.search("." + k))}
    if layers is not None and held and held != set(range(layers)):
        raise SizeLimitError(f"{source} has a text encoder of {layers} layers but weights for {len(held)}; it is "
                             "crafted or corrupt, do not use it")
    present = sum(v.numel() for v in weights.values())
    if config.get("model_type") in _BERT_LIKE and _estimated_parameters(config) > 1.25 * present + MiB:
        raise SizeLimitError(f"{source} has a text encoder config that builds more parameters than its "
                             f"{present:,} weights; it is crafted or corrupt, do not use it")


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Checkpoints -----------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint read without executing code (``g2l.io.checkpoint.read_checkpoint``: a regular
    file within the size bounds, zip members sized first) whose every field was checked
    (``check_untrusted_fields``); a bad file is a CheckpointError."""
    return checked(read_checkpoint(path), f"checkpoint {path}")


def checked(payload: dict, source: str) -> dict:
    """``payload`` after ``check_untrusted_fields``."""
    check_untrusted_fields(payload, source)
    return payload


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
    path = Path(path)
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
    return save_payload(path, payload)


def write_portable_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Copy a run's checkpoint as a file to ship: the same weights, its config without the paths of
    the machine that trained it (``g2l.config.portable_config_dict``), no W&B run id, atomically."""
    payload = load_checkpoint(source)
    payload["config"] = portable_config_dict(payload["config"])
    payload["extra"] = {k: v for k, v in (payload.get("extra") or {}).items() if k != "wandb_id"}
    return save_payload(target, payload)


def check_untrusted_fields(payload: dict, source: str) -> None:
    """A checkpoint is data from anywhere: every field that g2l later turns into files, imports or
    names must have the expected shape, or the whole checkpoint is refused before anything is built."""
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


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


# Model folders (the Hugging Face layout) ---------------------------------------------------------


def load_pretrained(folder: str | Path, source: str | None = None, *, within: str | Path | None = None) -> dict:
    """A checkpoint-shaped payload from a folder written by ``g2l.hub.export_pretrained``: its files
    read as untrusted (``g2l.io.pretrained.read_pretrained``: regular files inside ``within``, the
    folder itself by default, within their size bounds), then checked like a checkpoint."""
    source = source or f"model folder {folder}"
    payload = read_pretrained(folder, source, within=within)
    if payload.get("domain") is not None:
        from g2l.data.domain import summary_from_json

        payload["domain"] = summary_from_json(payload["domain"])
    return checked(payload, source)


def load_model_source(source: str | Path) -> tuple[dict, str]:
    """``(payload, name for messages)`` from a checkpoint file, a model folder or a hub repo id."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        if is_pretrained_folder(path):
            return load_pretrained(path), text
        raise CheckpointError(
            f"checkpoint {text} is a directory without {WEIGHTS_NAME} and {CONFIG_NAME}; pass a checkpoint file "
            "(e.g. runs/<name>/checkpoints/best.pt) or a folder written by g2l-export"
        )
    if looks_like_repo_id(text):
        snapshot = download_repo(text)
        return load_pretrained(snapshot, f"Hugging Face repo {text}", within=snapshot.parent.parent), text
    return load_checkpoint(path), text


