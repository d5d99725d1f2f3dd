"""A checkpoint is untrusted data. Crafted checkpoints that torch's safe loader accepts must not
write files or import code through eval, ground or resume: each is refused with one line, exit 2."""

import shutil
import sysconfig
import uuid
from pathlib import Path

import pytest
import torch

from g2l.cli import eval_main, ground_main, train_main
from g2l.config import load_config
from g2l.io.checkpoint import CheckpointError
from g2l.io.pretrained import TOKENIZER_FILE_NAMES
from g2l.models.checkpoint import load_checkpoint
from g2l.models.text_encoder import TextEncoderError, text_backbone_from_files
from g2l.train import train
from tests.fixtures import tiny_overrides, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_text_encoder_dir):
    folder = write_tiny_benchmark(tmp_path_factory.mktemp("bench"))
    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, tiny_overrides(folder, tiny_text_encoder_dir, out, **{"train.epochs": 1, "log.run_name": "r"}))
    result = train(cfg)
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["text_backbone"] is not None
    return result.run_dir


def _targets(tmp_path):
    """(name written into the checkpoint, the file it would create) for the three payloads."""
    tag = uuid.uuid4().hex[:10]
    absolute = tmp_path / f"absolute_{tag}.txt"
    # ../ escapes the temporary folder the tokenizer files are written to (it lies in the temp dir).
    import tempfile

    escaped = Path(tempfile.gettempdir()) / f"escaped_{tag}.txt"
    site_pth = Path(sysconfig.get_paths()["purelib"]) / f"g2l_test_payload_{tag}.pth"
    return {
        "absolute": (str(absolute), absolute),
        "dotdot": (f"../escaped_{tag}.txt", escaped),
        "site_pth": (str(site_pth), site_pth),
    }


def _craft(source: Path, dest: Path, name: str) -> None:
    payload = torch.load(source, map_location="cpu", weights_only=True)
    payload["text_backbone"]["tokenizer_files"][name] = "import os; os.environ['G2L_PWNED'] = '1'\n"
    torch.save(payload, dest)
    torch.load(dest, map_location="cpu", weights_only=True)  # the safe loader itself accepts it


@pytest.mark.parametrize("payload", ["absolute", "dotdot", "site_pth"])
@pytest.mark.parametrize("door", ["eval", "ground", "resume"])
def test_crafted_tokenizer_file_names_are_refused(run_dir, tmp_path, capsys, payload, door):
    name, target = _targets(tmp_path)[payload]
    try:
        if door == "resume":
            crafted_run = tmp_path / "run"
            shutil.copytree(run_dir, crafted_run)
            _craft(run_dir / "checkpoints" / "last.pt", crafted_run / "checkpoints" / "last.pt", name)
            code = train_main(["--resume", str(crafted_run), "train.epochs=2"])
        else:
            crafted = tmp_path / "crafted.pt"
            _craft(run_dir / "checkpoints" / "last.pt", crafted, name)
            if door == "eval":
                code = eval_main(["--checkpoint", str(crafted), "--out", str(tmp_path / "p.jsonl")])
            else:
                code = ground_main([str(REPO / "examples" / "demo.mp4"), "a query", "--checkpoint", str(crafted)])
        err = capsys.readouterr().err
        assert code == 2
        assert "refuses" in err and "Traceback" not in err
        assert not target.exists(), f"the checkpoint wrote {target}"
    finally:
        target.unlink(missing_ok=True)


def test_library_call_refuses_names_outside_the_allowed_list(tmp_path):
    spec = {"config": {"model_type": "bert"}, "tokenizer_files": {"sub/tokenizer.json": "{}"}}
    with pytest.raises(TextEncoderError, match="refuses"):
        text_backbone_from_files(spec)
    assert "tokenizer.json" in TOKENIZER_FILE_NAMES and not any("/" in n or "\\" in n for n in TOKENIZER_FILE_NAMES)


@pytest.mark.parametrize("config, match", [
    ({"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}}, "run code"),
    ({"model_type": "no_such_type"}, "unknown type"),
    ({}, "unknown type"),
])
def test_text_configs_that_name_code_or_unknown_types_are_refused(run_dir, tmp_path, config, match):
    payload = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    payload["text_backbone"]["config"] = config
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "c.pt")


def test_a_clean_checkpoint_still_loads(run_dir):
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert set(payload["text_backbone"]["tokenizer_files"]) <= TOKENIZER_FILE_NAMES
