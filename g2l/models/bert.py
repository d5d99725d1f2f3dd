"""A BERT encoder and its WordPiece tokenizer in plain torch and ``tokenizers``, for loading a
checkpoint without importing transformers.

Importing transformers' BERT module costs about 2.5 s of CPU (it pulls in torch.distributed.tensor,
torch._dynamo and scipy.optimize), more than the rest of grounding a 30 s video. A checkpoint
already carries the text backbone's weights, its config and its tokenizer files, so rebuilding it
needs only the forward pass: this module is that pass, with transformers' parameter names (the
checkpoint's state dict loads unchanged), and a tokenizer that calls the ``tokenizers`` library
(the Rust core of transformers' fast tokenizers) with the same per-call settings. Both are checked
against transformers on random and real weights (tests/models/test_bert.py); anything this module
does not cover exactly (another architecture, relative positions, a tokenizer other than BERT's
WordPiece) makes ``native_text_backbone`` return None and the caller uses transformers.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
                "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}
# Config values under which transformers' BertModel computes exactly what NativeBert does.
_REQUIRED = {"model_type": "bert", "is_decoder": False, "add_cross_attention": False}
_TOKENIZER_CLASSES = {"BertTokenizer", "BertTokenizerFast"}


class BertConfig(SimpleNamespace):
    """The backbone config as read from the checkpoint: attributes for the model, ``to_dict`` for
    writing it back unchanged."""

    def __init__(self, values: dict, defaults: dict | None = None):
        super().__init__(**{**(defaults or {}), **values})
        self._values = dict(values)

    def to_dict(self) -> dict:
        return dict(self._values)


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids) + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, l, h = x.shape

        def split(t):  # (b l h) -> (b heads l h/heads)
            return t.view(b, l, self.heads, h // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)), attn_mask=mask,
                                             dropout_p=self.dropout_p if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, l, h)


class _DenseNorm(nn.Module):
    """Linear, dropout, residual, LayerNorm: the ``output`` blocks of attention and feed-forward."""

    def __init__(self, c: BertConfig, width_in: int):
        super().__init__()
        self.dense = nn.Linear(width_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c, c.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = _ACTIVATIONS[c.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c, c.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class _Pooler(nn.Module):
    """Unused by g2l; kept so that transformers' state dict (which has it) loads strictly."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)


class NativeBert(nn.Module):
    """transformers' ``BertModel`` forward for a single sentence (token type 0, absolute positions),
    returning ``.hidden_states``: the embeddings and every layer's output, ``(b l hidden)`` each."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.pooler = _Pooler(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, output_hidden_states: bool = True) -> SimpleNamespace:
        b, l = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(l, device=input_ids.device).expand(b, l)
        x = self.embeddings(input_ids, position_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # additive key mask (b 1 1 l): 0 where attended, the dtype's minimum where padded
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        hidden = [x]
        for layer in self.encoder.layer:
            x = layer(x, mask)
            hidden.append(x)
        return SimpleNamespace(last_hidden_state=x, hidden_states=tuple(hidden))


class NativeTokenizer:
    """The calls g2l makes on a transformers fast tokenizer (``tokenizer(texts, padding=,
    truncation=, max_length=, return_tensors="pt", return_offsets_mapping=,
    return_special_tokens_mask=)``, ``is_fast``, ``save_pretrained``), on the ``tokenizers`` core that
    the transformers one wraps. Padding pads to the longest sequence on the right, as transformers
    does for BERT; the settings baked into tokenizer.json (a fixed padding, a truncation length) are
    overridden on every call, as transformers does."""

    is_fast = True

    def __init__(self, files: dict[str, str], pad_token: str, model_max_length: int):
        from tokenizers import Tokenizer

        self._files = dict(files)
        self._tokenizer = Tokenizer.from_str(files["tokenizer.json"])
        self._lock = threading.Lock()  # the settings below are the shared tokenizer's: one call at a time
        self.pad_token = pad_token
        self.pad_token_id = self._tokenizer.token_to_id(pad_token)
        self.model_max_length = model_max_length

    def __call__(self, text, *, padding: bool = False, truncation: bool = False, max_length: int | None = None,
                 return_tensors: str | None = None, return_offsets_mapping: bool = False,
                 return_special_tokens_mask: bool = False) -> dict:
        single = isinstance(text, str)
        tok = self._tokenizer
        with self._lock:
            if truncation:
                tok.enable_truncation(max_length if max_length is not None else self.model_max_length)
            else:
                tok.no_truncation()
            if padding:
                tok.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)
            else:
                tok.no_padding()
            encodings = tok.encode_batch([text] if single else list(text), add_special_tokens=True)
        out = {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings],
               "attention_mask": [e.attention_mask for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [[tuple(o) for o in e.offsets] for e in encodings]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_tensors == "pt":
            return {k: torch.tensor(v) for k, v in out.items()}
        if return_tensors is not None:
            raise ValueError(f"NativeTokenizer returns lists or torch tensors, not {return_tensors!r}")
        return {k: v[0] for k, v in out.items()} if single else out

    def __getstate__(self) -> dict:  # data-loader workers started by spawn get a copy
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def save_pretrained(self, folder) -> None:
        for name, text in self._files.items():
            (Path(folder) / name).write_text(text)


def native_text_backbone(spec: dict) -> tuple[NativeBert, NativeTokenizer] | None:
    """``(backbone with random weights, tokenizer)`` from a checked ``text_backbone`` spec (config
    dict and tokenizer files) when this module computes exactly what transformers would; else None."""
    config, files = spec["config"], spec["tokenizer_files"]
    if any(config.get(k, v) != v for k, v in _REQUIRED.items()) or config.get("model_type") != "bert":
        return None
    if config.get("position_embedding_type", "absolute") != "absolute" or config.get("hidden_act", "gelu") not in _ACTIVATIONS:
        return None
    if "tokenizer.json" not in files:
        return None
    try:
        tokenizer_config = json.loads(files.get("tokenizer_config.json", "{}"))
        special = json.loads(files.get("special_tokens_map.json", "{}"))
        tokenizer_json = json.loads(files["tokenizer.json"])
    except (ValueError, RecursionError):  # bad JSON, a huge integer, deep nesting: transformers then reports it
        return None
    if not all(isinstance(x, dict) for x in (tokenizer_config, special, tokenizer_json)):
        return None
    if tokenizer_config.get("tokenizer_class", "BertTokenizer") not in _TOKENIZER_CLASSES:
        return None
    # transformers' BertTokenizer rebuilds the normaliser from these settings: use the file only
    # where it already agrees with them.
    normalizer = tokenizer_json.get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer" or tokenizer_json.get("model", {}).get("type") != "WordPiece":
        return None
    if normalizer.get("lowercase") != tokenizer_config.get("do_lower_case", True):
        return None
    if normalizer.get("strip_accents") != tokenizer_config.get("strip_accents"):
        return None
    if normalizer.get("handle_chinese_chars") != tokenizer_config.get("tokenize_chinese_chars", True):
        return None
    pad = special.get("pad_token", tokenizer_config.get("pad_token", "[PAD]"))
    pad = pad.get("content") if isinstance(pad, dict) else pad
    defaults = {"hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
    needed = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    if not all(isinstance(config.get(k), int) and config[k] > 0 for k in needed) or not isinstance(pad, str):
        return None
    if config["hidden_size"] % config["num_attention_heads"]:
        return None
    max_length = tokenizer_config.get("model_max_length", 512)
    if not isinstance(max_length, int) or max_length > 10**6:
        max_length = 512
    try:
        tokenizer = NativeTokenizer(files, pad, max_length)
    except Exception:  # noqa: BLE001 - tokenizers raises plain Exception on a malformed file: transformers then reports it
        return None
    if tokenizer.pad_token_id is None:
        return None
    return NativeBert(BertConfig(config, defaults)), tokenizer  # built last: nothing is built for a fallback
