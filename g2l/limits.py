"""Bounds on what a checkpoint or a model folder may make g2l read or allocate, checked before any
module is built.

A checkpoint is untrusted data: ``model.map_num_layers: 200000`` or a text config of 3,000 layers
or a vocabulary of 10**9 would otherwise build modules until memory runs out, a 3 MB zip would
inflate to gigabytes, a tensor of NaN would ground nonsense. Every size that decides an
allocation is checked twice: against a sane bound below (far above any real model), and against
the tensors the state dict actually holds (a model needs a weight for each parameter it builds,
so sizes that agree with the weights cost no more memory than the file already did).
"""

from __future__ import annotations

import re
import zipfile
from typing import BinaryIO

import torch

from g2l.config import quote
from g2l.errors import G2LError

MiB = 2**20
GiB = 2**30

# Files ---------------------------------------------------------------------------------------
# A JSON or tokenizer file of a model folder (config.json, tokenizer.json, vocab.txt, ...): the
# largest common tokenizer.json (XLM-R's, 250k tokens) is about 17 MB.
MAX_TEXT_FILE_BYTES = 64 * MiB
# A checkpoint (.pt) or model.safetensors on disk: BERT-large with its Adam state is about 4 GB.
MAX_WEIGHTS_BYTES = 16 * GiB
# The pickled part of a .pt (config, metrics, tokenizer files as text; tensors are stored apart).
MAX_PICKLE_BYTES = 512 * MiB
# torch.save stores zip members uncompressed, so the members together are as big as the file; a
# zip that inflates to more than this many times its size (plus the slack) is a zip bomb.
MAX_INFLATION = 2
INFLATION_SLACK_BYTES = 64 * MiB

# g2l's own model (config.py's ModelConfig / DataConfig) --------------------------------------
MODEL_BOUNDS = {
    "num_clips": 1024,  # N: the map holds N*N cells per channel (the benchmarks use 16 to 128)
    "map_num_layers": 64,  # map convolutions (MMN: 4 to 8)
    "map_kernel_size": 63,  # their kernel side (5 to 9)
    "hidden_dim": 16384,  # H (64 to 512)
    "joint_dim": 16384,  # the joint space (256)
    "text_num_layers": 256,  # hidden layers averaged (1 to 4); never more than the backbone has
    "text_max_tokens": 65536,  # tokens per query (64)
}
DATA_BOUNDS = {
    "feature_dim": 65536,  # F: frame feature width (500 to 4096)
    "num_pre_clips": 65536,  # P: pre-clips per video (32 to 256)
}
MAX_POOLING_COUNTS = 64  # entries of model.pooling_counts (1 to 3)

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


class SizeLimitError(G2LError):
    """A checkpoint or file whose sizes are out of bounds or disagree with its own weights."""


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Files -----------------------------------------------------------------------------------------


def check_zip_members(file: BinaryIO, file_bytes: int, source: str) -> None:
    """Before ``torch.load``: the zip's members, by the sizes its directory declares, inflate to
    no more than the bounds above. A file that is not a zip (truncated, or another format) is
    refused: g2l writes only torch's zip format."""
    try:
        members = zipfile.ZipFile(file).infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise SizeLimitError(f"{source} could not be read: it is truncated or corrupt, or not a checkpoint; "
                             "copy it again or use another") from None
    finally:
        file.seek(0)
    total = sum(m.file_size for m in members)
    pickled = sum(m.file_size for m in members if m.filename.endswith(".pkl"))
    if total > MAX_WEIGHTS_BYTES or total > MAX_INFLATION * file_bytes + INFLATION_SLACK_BYTES:
        raise SizeLimitError(
            f"{source} inflates from {file_bytes / MiB:,.1f} MB on disk to {total / MiB:,.1f} MB when read, which no "
            "checkpoint written by g2l does; do not use this file"
        )
    if pickled > MAX_PICKLE_BYTES:
        raise SizeLimitError(
            f"{source} holds {pickled / MiB:,.1f} MB of pickled data besides its tensors (at most "
            f"{MAX_PICKLE_BYTES / MiB:,.0f} MB); it is not a g2l checkpoint, do not use it"
        )


# Tensors ---------------------------------------------------------------------------------------


def check_state_tensors(state: dict, source: str) -> None:
    """Every weight is a plain dense tensor on the CPU, no bigger than its storage, and finite.
    Sparse, meta or quantised tensors, views that repeat a small storage to a huge shape, and
    NaN or infinite values are refused with the tensor's name."""
    total = 0
    for name, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_meta or tensor.is_quantized or tensor.device.type != "cpu":
            raise SizeLimitError(
                f"{source} holds the weight {name[:120]} as a {tensor.layout} {tensor.device.type} tensor; g2l loads "
                "only dense tensors, do not use this checkpoint"
            )
        stored = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1)
        if tensor.numel() > stored:
            raise SizeLimitError(
                f"{source} holds the weight {name[:120]} of shape {tuple(tensor.shape)} over a storage of {stored} "
                "values; it is crafted or corrupt, do not use it"
            )
        total += tensor.numel() * tensor.element_size()
        if total > MAX_WEIGHTS_BYTES:
            raise SizeLimitError(f"{source} holds more than {MAX_WEIGHTS_BYTES // GiB} GB of weights; do not use it")
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise SizeLimitError(
                f"{source} has NaN or infinite values in the weight {name[:120]}; the training that wrote it "
                "diverged or the file is corrupt, use another checkpoint"
            )


# g2l's model -----------------------------------------------------------------------------------


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
    for section, values, bounds in (("model", model, MODEL_BOUNDS), ("data", data, DATA_BOUNDS)):
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
