"""Sizes are checked before anything is built (g2l/io/limits.py, g2l/config/bounds.py, g2l/models/checkpoint.py): a config that would build more
than its weights hold, a zip that inflates, a file too big to read, a tensor that is not a plain
dense one, NaN weights, JSON nested past Python's recursion: each is refused with one line (exit
status 2 in the CLI) and nothing is allocated for it. An export into an existing folder replaces
it whole or leaves it as it was."""

import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import g2l.hub as hub
import g2l.io.limits as limits
from g2l.cli import eval_main, export_main
from g2l.errors import G2LError
from g2l.io.checkpoint import CheckpointError
from g2l.models.checkpoint import load_checkpoint
from g2l.models.checkpoint import load_model_source
from tests.fixtures import copy_files, export_folder, tiny_checkpoint_with_text


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_text_encoder_dir):
    return tiny_checkpoint_with_text(tmp_path_factory.mktemp("ckpt"), tiny_text_encoder_dir)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    return export_folder(checkpoint, tmp_path_factory.mktemp("export") / "F")


@pytest.fixture()
def folder(exported, tmp_path):
    return copy_files(exported, tmp_path / "F")


def _payload(checkpoint):
    return torch.load(checkpoint, map_location="cpu", weights_only=True)


def _shared_lists(levels: int = 30):
    value = ["lol"]
    for _ in range(levels):
        value = [value] * 10
    return value


def _refused(tool_args, capsys, fragment):
    tool, args = tool_args
    code = {"eval": eval_main, "export": export_main}[tool](args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and len(err) < 600, err
    assert fragment in err, err
    return err


def _eval_args(path, tmp_path):
    return "eval", ["--checkpoint", str(path), "--out", str(tmp_path / "p.jsonl")]


# Sizes in the config, against bounds and against the weights ------------------------------------


@pytest.mark.parametrize("edit, fragment", [
    (lambda p: p["config"]["model"].update(map_num_layers=200_000), "model.map_num_layers = 200000, outside"),
    (lambda p: p["config"]["model"].update(map_num_layers=4), "model.map_num_layers = 4 but its weights hold 2"),
    (lambda p: p["config"]["model"].update(num_clips=10**6), "model.num_clips = 1000000, outside"),
    (lambda p: p["config"]["model"].update(hidden_dim=64), "video_encoder.proj.weight of shape (16, 16, 1) where"),
    (lambda p: p["config"]["data"].update(feature_dim=10**9), "data.feature_dim = 1000000000, outside"),
    (lambda p: p["text_backbone"]["config"].update(num_hidden_layers=3000), "num_hidden_layers = 3000, outside"),
    (lambda p: p["text_backbone"]["config"].update(num_hidden_layers=3), "of 3 layers but weights for 2"),
    (lambda p: p["text_backbone"]["config"].update(vocab_size=10**9), "vocab_size = 1000000000, outside"),
    (lambda p: p["text_backbone"]["config"].update(vocab_size=6), "vocab_size = 6 but a word embedding of 5 rows"),
    (lambda p: p["text_backbone"]["config"].update(intermediate_size=60000), "builds more parameters than its"),
    (lambda p: [p["model"].pop(k) for k in list(p["model"]) if k.startswith("text_encoder.backbone.")],
     "a text encoder config but no text encoder weights"),
    # A long integer (torch's safe loader reads integers up to 255 bytes) and a string built from lists
    # that share one another (10**30 strings once expanded): quoted short, never printed whole.
    (lambda p: p["config"]["model"].update(num_clips=10**250), "model.num_clips = <an integer of 251 digits>, outside"),
    (lambda p: p["text_backbone"]["config"].update(vocab_size=-10**250), "vocab_size = <an integer of 251 digits>"),
    (lambda p: p["config"]["train"].update(seed=10**250), "'train.seed' must be an integer below 2**63, got <an integer"),
    (lambda p: p["config"]["data"].update(name=_shared_lists()), "'data.name' must be a string, got [[[["),
    (lambda p: p.update(frame_encoder={"name": _shared_lists()}), "has a malformed frame_encoder entry"),
    (lambda p: p["best"].update(note="x" * 10**6), "has malformed metrics"),
    (lambda p: p.update(frame_encoder={"mean": ["x" * 10**6]}), "has a malformed frame_encoder entry"),
    (lambda p: p["config"]["eval"].update(best_metric="R1@0.5" * 10**6), "eval.best_metric 'R1@0.5R1@0.5R1"),
])
def test_sizes_out_of_bounds_or_against_the_weights_are_refused_before_building(checkpoint, tmp_path, capsys,
                                                                                monkeypatch, edit, fragment):
    import g2l.models.grounding as grounding

    payload = _payload(checkpoint)
    edit(payload)
    torch.save(payload, tmp_path / "c.pt")
    monkeypatch.setattr(grounding, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    _refused(_eval_args(tmp_path / "c.pt", tmp_path), capsys, fragment)


def test_an_override_is_checked_too(checkpoint):
    from g2l.models.checkpoint import model_from_checkpoint

    payload = load_checkpoint(checkpoint)
    with pytest.raises(G2LError, match="'model.map_num_layers' must be at most 64"):
        model_from_checkpoint(payload, "c", ["model.map_num_layers=100000"])
    model, cfg = model_from_checkpoint(payload, "c")  # unchanged, it builds
    assert cfg.model.map_num_layers == 2 and len(model.map_encoder.convs) == 2


# Files and zip members, sized before they are read ---------------------------------------------


def test_a_zip_that_inflates_is_refused_before_torch_reads_it(checkpoint, tmp_path, capsys, monkeypatch):
    """The checkpoint's members, deflated, plus a 160 MiB member of zeros: the file is small, its
    members declare far more than it holds."""
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(checkpoint) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        prefix = source.namelist()[0].split("/")[0]
        for info in source.infolist():
            out.writestr(info.filename, source.read(info))
        with out.open(f"{prefix}/data/99999", "w", force_zip64=True) as member:
            zeros = bytes(2**20)
            for _ in range(160):
                member.write(zeros)
    assert bomb.stat().st_size < 8 * 2**20
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load read the bomb"))
    _refused(_eval_args(bomb, tmp_path), capsys, "MB on disk to 16")


def test_a_pickle_too_big_is_refused(checkpoint, tmp_path, monkeypatch):
    payload = _payload(checkpoint)
    payload["extra"] = {"padding": "x" * 2**20}
    torch.save(payload, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt")["extra"]["padding"]  # under the real bound it loads
    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", 2**19)
    with pytest.raises(G2LError, match="of pickled data besides its tensors"):
        load_checkpoint(tmp_path / "c.pt")


def test_files_too_big_are_refused_by_their_size_on_disk(folder, tmp_path, capsys):
    """Sparse files: 1.5 GB and 20 GB on paper, nothing on disk, refused without a byte read."""
    with open(folder / "tokenizer.json", "r+b") as file:
        file.truncate(1_500_000_000)
    _refused(("export", [str(folder), str(tmp_path / "out")]), capsys, "tokenizer.json is 1,430.5 MB, more than")
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as file:
        file.truncate(20 * 2**30)
    _refused(_eval_args(huge, tmp_path), capsys, "huge.pt is 20,480.0 MB, more than")


def test_not_a_zip_is_truncated_or_corrupt(checkpoint, tmp_path, capsys):
    (tmp_path / "c.pt").write_bytes(Path(checkpoint).read_bytes()[:5000])
    _refused(_eval_args(tmp_path / "c.pt", tmp_path), capsys, "truncated or corrupt")


# Tensors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, fragment", [
    (lambda w: w.to_sparse(), "as a torch.sparse_coo cpu tensor"),
    (lambda w: torch.empty(w.shape, device="meta"), "as a torch.strided meta tensor"),
    (lambda w: torch.zeros(1).expand(10**7), "of shape (10000000,) over a storage of 1 values"),
    (lambda w: w.index_fill(0, torch.tensor([1]), float("nan")), "NaN or infinite values in the weight"),
    (lambda w: w.index_fill(0, torch.tensor([0]), float("-inf")), "NaN or infinite values in the weight"),
])
def test_tensors_that_are_not_plain_finite_weights_are_refused(checkpoint, tmp_path, capsys, make, fragment):
    payload = _payload(checkpoint)
    name = "map_encoder.convs.0.weight"
    payload["model"][name] = make(payload["model"][name])
    torch.save(payload, tmp_path / "c.pt")
    err = _refused(_eval_args(tmp_path / "c.pt", tmp_path), capsys, fragment)
    assert name in err


def test_nan_weights_in_a_folder_are_refused(folder, tmp_path, capsys):
    weights = load_file(folder / "model.safetensors")
    weights["text_encoder.norm.weight"][3] = float("nan")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt", "g2l_format": "g2l-pretrained"})
    _refused(("export", [str(folder), str(tmp_path / "out")]), capsys,
             "NaN or infinite values in the weight text_encoder.norm.weight")


# JSON of a folder ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, text, fragment", [
    ("config.json", "[" * 200_000 + "]" * 200_000, "config.json could not be read as JSON (RecursionError)"),
    ("config.json", '{"model": ' + "9" * 5000 + "}", "config.json could not be read as JSON (ValueError)"),
    ("text_encoder.json", '{"a":' * 100_000 + "1" + "}" * 100_000, "text_encoder.json could not be read as JSON"),
    ("metrics.json", "[1, 2]", "metrics.json is not a JSON object of metrics"),
    ("metrics.json", '{"best": 5}', "has malformed metrics"),
    ("metrics.json", '{"best": {"R1@0.5": [0.1]}}', "has malformed metrics"),
])
def test_malformed_json_in_a_folder_is_one_sentence(folder, tmp_path, capsys, name, text, fragment):
    (folder / name).write_text(text)
    _refused(("export", [str(folder), str(tmp_path / "out")]), capsys, fragment)


def test_a_tokenizer_json_nested_past_recursion_is_one_sentence(checkpoint, tmp_path, capsys):
    payload = _payload(checkpoint)
    payload["text_backbone"]["tokenizer_files"]["tokenizer.json"] = "[" * 200_000 + "]" * 200_000
    torch.save(payload, tmp_path / "c.pt")
    err = _refused(_eval_args(tmp_path / "c.pt", tmp_path), capsys, "its text encoder cannot be rebuilt")
    assert "RecursionError" in err or "recursion" in err.lower()


# Export into an existing folder ----------------------------------------------------------------


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_export_over_an_existing_export_is_all_or_nothing(folder, checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert export_main([str(checkpoint), str(out), "--name", "first"]) == 0
    before = _snapshot(out)

    (folder / "metrics.json").write_text('{"best": 5}')  # a bad source: refused, out untouched
    _refused(("export", [str(folder), str(out)]), capsys, "malformed metrics")
    assert _snapshot(out) == before

    def fail(staging):  # the disk fills after the weights and a few files are written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hub, "sync_folder", fail)
    _refused(("export", [str(checkpoint), str(out), "--name", "second"]), capsys, "No space left on device")
    assert _snapshot(out) == before
    monkeypatch.undo()

    assert export_main([str(checkpoint), str(out), "--name", "second"]) == 0
    after = _snapshot(out)
    assert set(after) == set(before) and "# second" in after["README.md"].decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["F", "out"]  # no staging or old folder left
    assert load_model_source(out)[0]["best"]["R1@0.5"] == 0.25


def test_export_refuses_a_folder_of_other_files(checkpoint, tmp_path, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8")
    _refused(("export", [str(checkpoint), str(out)]), capsys, "is a folder of other files")
    assert _snapshot(out) == {"holiday.jpg": b"\xff\xd8"}


def test_a_clean_checkpoint_and_folder_still_load(checkpoint, exported):
    assert load_checkpoint(checkpoint)["best"]["R1@0.5"] == 0.25
    payload, _ = load_model_source(exported)
    assert set(payload["text_backbone"]["tokenizer_files"]) >= {"tokenizer.json"}
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(exported / "missing.pt")
