"""No file is read through a link (g2l/io/safe_files.py): a model folder's files are read only when
they are regular files inside the folder, export and upload copy only the layout's files that the
loader checked, and a checkpoint path that is a device or a FIFO is refused as "not a regular
file" instead of being read for ever. Each refusal is one line and exit status 2 in the CLI."""

import os
import signal
import sys
from pathlib import Path

import pytest

from g2l.cli import eval_main, export_main
from g2l.errors import G2LError
from g2l.hub import push_to_hub
from g2l.io.pretrained import exported_files
from g2l.models.checkpoint import load_model_source, load_pretrained
from tests.fixtures import copy_files, export_folder, tiny_checkpoint_with_text

SECRET = "G2L_TEST_SECRET_4f1d"
posix = pytest.mark.skipif(sys.platform == "win32", reason="symbolic links and FIFOs as on POSIX")


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory, tiny_text_encoder_dir):
    return tiny_checkpoint_with_text(tmp_path_factory.mktemp("full"), tiny_text_encoder_dir)


@pytest.fixture(scope="module")
def exported(full_checkpoint, tmp_path_factory):
    return export_folder(full_checkpoint, tmp_path_factory.mktemp("export") / "F")


@pytest.fixture()
def folder(exported, tmp_path):
    """A fresh copy of the exported folder (real files) and a secret file beside it."""
    (tmp_path / "secret.txt").write_text(SECRET)
    return copy_files(exported, tmp_path / "F")


@pytest.fixture()
def deadline():
    """A refusal must come at once: a read of a FIFO or /dev/zero that hangs fails the test instead."""
    def expired(signum, frame):
        raise TimeoutError("a link, a FIFO or a device was read instead of refused")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _no_secret_anywhere(root: Path) -> bool:
    return not any(SECRET in p.read_text(errors="replace") for p in root.rglob("*")
               if p.is_file() and not p.is_symlink() and p.name != "secret.txt")


def test_the_export_has_the_files_the_cases_replace(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"model.safetensors", "config.json", "metrics.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert sorted(exported_files(exported)) == sorted(names)  # every file written is a layout file


@posix
@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "config.json", "text_encoder.json",
                                  "metrics.json", "model.safetensors", "vocab.txt"])
@pytest.mark.parametrize("link", ["absolute", "dotdot", "environ"])
def test_a_link_out_of_the_folder_is_refused(folder, tmp_path, capsys, deadline, name, link):
    target = {"absolute": str(tmp_path / "secret.txt"), "dotdot": "../secret.txt", "environ": "/proc/self/environ"}[link]
    if link == "environ" and not Path(target).exists():
        pytest.skip("no /proc/self/environ here")
    (folder / name).unlink(missing_ok=True)
    os.symlink(target, folder / name)
    out = tmp_path / "out"
    assert export_main([str(folder), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{name} is a link to" in err and "outside the folder" in err, err
    assert not out.exists() and _no_secret_anywhere(tmp_path)


@posix
def test_a_link_inside_that_climbs_out_through_a_subfolder_is_refused(folder, tmp_path):
    (folder / "sub").mkdir()
    (folder / "tokenizer.json").unlink()
    os.symlink("sub/../../secret.txt", folder / "tokenizer.json")
    with pytest.raises(G2LError, match="is a link to .*outside the folder"):
        load_model_source(folder)


@posix
def test_a_link_or_hardlink_to_a_file_inside_the_folder_is_allowed(folder, tmp_path):
    expected, _ = load_model_source(folder)
    (folder / "kept").mkdir()
    os.replace(folder / "tokenizer.json", folder / "kept" / "tokenizer.json")
    os.symlink("kept/tokenizer.json", folder / "tokenizer.json")
    os.replace(folder / "config.json", folder / "kept" / "config.json")
    os.link(folder / "kept" / "config.json", folder / "config.json")
    payload, _ = load_model_source(folder)
    assert payload["config"] == expected["config"]
    assert payload["text_backbone"]["tokenizer_files"] == expected["text_backbone"]["tokenizer_files"]


@posix
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_folder_file_that_is_a_fifo_or_a_device_is_refused(folder, tmp_path, capsys, deadline, kind):
    (folder / "tokenizer.json").unlink()
    if kind == "fifo":
        os.mkfifo(folder / "tokenizer.json")
    else:  # a link to /dev/zero resolves outside the folder; a device inside it is refused as not a file
        os.symlink("/dev/zero", folder / "tokenizer.json")
    assert export_main([str(folder), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tokenizer.json" in err, err
    assert ("is not a regular file (it is a FIFO" in err) if kind == "fifo" else ("outside the folder" in err), err


@posix
@pytest.mark.parametrize("kind, fragment", [("dev_zero", "is not a regular file (it is a device)"),
                                            ("fifo", "is not a regular file (it is a FIFO")])
@pytest.mark.parametrize("tool", ["eval", "export"])
def test_a_checkpoint_path_that_is_a_device_or_a_fifo_is_refused(tmp_path, capsys, deadline, kind, fragment, tool):
    path = tmp_path / "model.pt"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    if tool == "eval":
        code = eval_main(["--checkpoint", str(path), "--out", str(tmp_path / "p.jsonl")])
    else:
        code = export_main([str(path), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err and "does not exist" not in err, err


@posix
def test_a_checkpoint_path_that_links_to_a_real_checkpoint_still_loads(full_checkpoint, tmp_path):
    os.symlink(full_checkpoint, tmp_path / "best.pt")
    payload, _ = load_model_source(tmp_path / "best.pt")
    assert payload["best"]["R1@0.5"] == 0.25


@posix
def test_push_uploads_only_checked_layout_files(folder, tmp_path, monkeypatch):
    import huggingface_hub

    uploads = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            pass

        def upload_folder(self, **kwargs):
            uploads.append(kwargs)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    (folder / "notes.txt").write_text("not a layout file")
    push_to_hub(folder, "my-org/tiny")
    assert sorted(uploads[0]["allow_patterns"]) == sorted(p.name for p in folder.iterdir() if p.name != "notes.txt")

    uploads.clear()
    (folder / "vocab.txt").unlink(missing_ok=True)
    os.symlink(tmp_path / "secret.txt", folder / "vocab.txt")
    with pytest.raises(G2LError, match="vocab.txt is a link to .*outside the folder"):
        push_to_hub(folder, "my-org/tiny")
    assert uploads == []


@posix
def test_a_hub_snapshot_may_link_into_its_own_cache_folder_only(exported, tmp_path, monkeypatch):
    """The Hugging Face cache stores snapshots/<commit>/<file> as links to ../../blobs/<hash>."""
    import g2l.models.checkpoint as model_files

    repo = tmp_path / "models--org--tiny"
    snapshot = repo / "snapshots" / "0123abcd"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for index, path in enumerate(sorted(exported.iterdir())):
        (repo / "blobs" / f"blob{index}").write_bytes(path.read_bytes())
        os.symlink(f"../../blobs/blob{index}", snapshot / path.name)
    monkeypatch.setattr(model_files, "download_repo", lambda repo_id: snapshot)
    payload, _ = load_model_source("org/tiny")
    assert payload["best"]["R1@0.5"] == 0.25
    with pytest.raises(G2LError, match="outside the folder"):  # a folder's own limits are the snapshot itself
        load_pretrained(snapshot)

    (tmp_path / "secret.txt").write_text(SECRET)
    (snapshot / "tokenizer.json").unlink()
    os.symlink("../../../secret.txt", snapshot / "tokenizer.json")
    with pytest.raises(G2LError, match="tokenizer.json is a link to .*outside the folder"):
        load_model_source("org/tiny")


@posix
def test_a_floors_file_that_is_a_fifo_is_refused(full_checkpoint, tmp_path, deadline):
    from g2l.hub import export_pretrained

    os.mkfifo(tmp_path / "floors.json")
    with pytest.raises(G2LError, match="floors file .* is not a regular file"):
        export_pretrained(full_checkpoint, tmp_path / "out", floors=tmp_path / "floors.json")
    assert not (tmp_path / "out").exists()


# A folder or one of its components swapped for a link between the check and the open ------------
# (g2l/io/safe_files.py opens every component relative to the descriptor of the one above, O_NOFOLLOW)


@posix
@pytest.mark.parametrize("swapped", ["file", "subfolder", "folder"])
def test_a_component_swapped_for_a_link_just_before_the_open_is_not_followed(tmp_path, monkeypatch, swapped):
    from g2l.io.safe_files import open_regular_file

    root, outside = tmp_path / "F", tmp_path / "outside"
    for folder, text in ((root, "inside"), (outside, SECRET)):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "vocab.txt").write_text(text)
    moved = {"file": root / "sub" / "vocab.txt", "subfolder": root / "sub", "folder": root}[swapped]
    target = outside / moved.relative_to(root) if swapped != "folder" else outside
    real_open = os.open
    calls = []

    def swap_then_open(*args, **kwargs):  # the race: the swap lands after every check made by name
        if not calls:
            os.replace(moved, moved.with_name(moved.name + ".old"))
            os.symlink(target, moved)
        calls.append(args)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(G2LError, match="outside the folder|changed while it was read"):
        with open_regular_file(root / "sub" / "vocab.txt", what="vocab.txt", max_bytes=100, within=root) as file:
            assert file.read() != SECRET.encode(), "read through the swapped link"


@posix
def test_a_model_folder_swapped_for_a_link_while_it_is_loaded_is_read_as_it_was(folder, tmp_path, monkeypatch):
    import json

    import g2l.io.pretrained as pretrained

    expected, _ = load_model_source(folder)
    other = copy_files(folder, tmp_path / "other")  # what the swapped-in link points at
    (other / "metrics.json").write_text(json.dumps({"best": {"R1@0.5": 0.99}}))
    (other / "tokenizer_config.json").write_text(json.dumps({"secret": SECRET}))
    real_read_json = pretrained._read_json

    def read_then_swap(where, name, *args, **kwargs):
        value = real_read_json(where, name, *args, **kwargs)
        if name == "config.json":  # after the first file, the folder's name is swapped for a link
            os.replace(folder, tmp_path / "F.old")
            os.symlink(other, folder)
        return value

    monkeypatch.setattr(pretrained, "_read_json", read_then_swap)
    payload, _ = load_model_source(folder)
    assert payload["best"] == expected["best"] and payload["best"]["R1@0.5"] == 0.25
    assert payload["text_backbone"]["tokenizer_files"] == expected["text_backbone"]["tokenizer_files"]
    assert SECRET not in json.dumps(payload["text_backbone"]["tokenizer_files"])


@posix
def test_a_loop_of_links_inside_the_folder_is_refused_not_followed_for_ever(folder, deadline):
    (folder / "tokenizer.json").unlink()
    os.symlink("a", folder / "tokenizer.json")
    os.symlink("b", folder / "a")
    os.symlink("a", folder / "b")
    with pytest.raises(G2LError, match="tokenizer.json is a symbolic link that changed while it was read, or a loop"):
        load_model_source(folder)
