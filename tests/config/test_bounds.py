"""Small config inputs that would expand, and config values that used to end in a traceback: each is
one ConfigError sentence naming the file or key (g2l/config/bounds.py), found before anything is
expanded, and a value quoted in a message is cut short (``quote``)."""

from pathlib import Path

import pytest

import g2l.config.load as config_module
from g2l.config import ConfigError, config_from_dict, load_config
from g2l.config.strict_yaml import MAX_VALUES
from g2l.errors import quote


def _laughs(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": ``width ** levels`` strings from about 600 bytes of YAML anchors, as the
    value of data.name (anchor ``lK`` is a list of ``lK-1`` and ``width - 1`` aliases of it)."""
    value = "&l0 [" + ", ".join(["lol"] * width) + "]"
    for level in range(1, levels):
        value = f"&l{level} [{value}, " + ", ".join([f"*l{level - 1}"] * (width - 1)) + "]"
    return f"data: {{name: {value}}}\n"


def _shared_lists(levels: int = 30, width: int = 10):
    """10**30 strings as 30 lists of 10 references each (what a pickle's memo or a YAML alias makes)."""
    value = ["lol"]
    for _ in range(levels):
        value = [value] * width
    return value


@pytest.mark.parametrize("text, fragment", [
    (_laughs(), f"stands for more than {MAX_VALUES:,} values once its anchors and aliases"),
    ("train: &t {milestones: [*t]}\n", "contains itself through an alias"),
    ("model: " + "[" * 200 + "]" * 200 + "\n", "nests values more than 32 deep at line 1"),
    ("model: {num_clips: " + "1" * 5000 + "}\n", "holds an integer of 5,000 characters at line 1, column 20"),
    ("train: {seed: 0x" + "f" * 400 + "}\n", "holds an integer of 402 characters"),
    ("_base_: 5\n", "_base_ must be a file name or a list of file names (relative to the file), got 5"),
    ("_base_: [null]\n", "_base_ must be a file name or a list of file names (relative to the file), got [None]"),
    ("_base_: {a: b}\n", "_base_ must be a file name or a list of file names"),
    ('_base_: "a\\0b.yaml"\n', "_base_ must be a file name or a list of file names (relative to the file), got 'a\\x00b.yaml'"),
    ("_base_: " + "n" * 300 + ".yaml\n", "cannot be reached (File name too long); pass a YAML config file"),
    ("model: {5: 1}\n", "config key 5 in section model is not a name"),
    ("model: {num_clips: [[1, 2], [3]]}\n", "'model.num_clips' must be an integer, got [[1, 2], [3]]"),
])
def test_a_config_file_that_would_expand_or_crash_is_one_sentence_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert fragment in message and "\n" not in message and len(message) < 800, message
    assert str(tmp_path) in message or "config key" in message


def test_the_expansion_bound_is_counted_on_aliases_not_on_the_text(tmp_path):
    # Four levels: 9 strings under 1 + 9 + 81 + 729 lists, 7,381 values once expanded, within the
    # bound: read, and refused for its type with a short quote.
    (tmp_path / "ok.yaml").write_text(_laughs(levels=4))
    with pytest.raises(ConfigError, match=r"'data.name' must be a string, got \[\[\[\["):
        load_config(tmp_path / "ok.yaml")
    # Five levels stand for 66,430 values: over the bound, refused before anything is built.
    (tmp_path / "over.yaml").write_text(_laughs(levels=5))
    with pytest.raises(ConfigError, match="stands for more than"):
        load_config(tmp_path / "over.yaml")
    # An alias of a small value is ordinary YAML and still read.
    (tmp_path / "aliases.yaml").write_text("data: {train_split: &split val, eval_split: *split}\n")
    cfg = load_config(tmp_path / "aliases.yaml")
    assert (cfg.data.train_split, cfg.data.eval_split) == ("val", "val")


@pytest.mark.parametrize("override, fragment", [
    ("model.num_clips=" + "1" * 5000, "override of 'model.num_clips' holds an integer of 5,000 characters"),
    ("data.name=" + "9" * 5000, "override of 'data.name' holds an integer of 5,000 characters"),
    ("model.num_clips=" + "[" * 100 + "]" * 100, "override of 'model.num_clips' nests values more than 32 deep"),
    ("train.seed=" + "9" * 20, "'train.seed' must be an integer below 2**63"),
    ("model.num_clips=" + "9" * 25, "'model.num_clips' must be an integer below 2**63"),
])
def test_a_huge_or_deep_override_names_its_key(override, fragment):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    assert fragment in str(error.value) and len(str(error.value)) < 300, str(error.value)


@pytest.mark.parametrize("data, fragment", [
    ({"data": {"name": _shared_lists()}}, "config key 'data.name' must be a string, got [[[["),
    ({"data": _shared_lists()}, "config key 'data' is a section and must be a mapping"),
    ({"model": {"num_clips": 10**5000}}, "'model.num_clips' must be an integer below 2**63, got <an integer of 5001 digits>"),
    ({"train": {"lr": 10**5000}}, "'train.lr' must be a number, got <an integer of 5001 digits>"),
    ({"data": {"name": -10**5000}}, "'data.name' must be a string, got <an integer of 5001 digits>"),
    ({"model": {10**5000: 1}}, "config key <an integer of 5001 digits> in section model is not a name"),
    ({"loss": {"gcl_form": _shared_lists()}}, "'loss.gcl_form' was retired"),
    ({"model": {"pooling_counts": [*range(1, 10**5), 0]}}, "positive integers, got [1, 2, 3, 4, 5, ...]"),
])
def test_a_stored_config_of_shared_or_huge_values_is_refused_with_a_short_quote(data, fragment):
    """What a checkpoint's pickled config can hold: references that share one another stand for
    10**30 strings, and integers past Python's 4,300-digit printing limit."""
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    message = str(error.value)
    assert fragment in message and len(message) < 400, message


def test_quote_is_short_and_never_expands_or_prints_a_huge_integer():
    assert quote("abc") == "'abc'" and quote([1, 2]) == "[1, 2]" and quote(None) == "None"
    assert quote(10**5000) == "<an integer of 5001 digits>"
    assert len(quote(_shared_lists(levels=1000))) <= 80
    assert "..." in quote("x" * 10_000) and len(quote("x" * 10_000)) <= 80
    loop: list = []
    loop.append(loop)
    assert len(quote(loop)) <= 80


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def test_a_base_shared_by_several_bases_is_read_and_applied_once(tmp_path, monkeypatch):
    # A diamond: top builds on left and right, both on common. common is applied once, first, so the
    # value left sets over it stands (right does not set it again through common).
    _write(tmp_path, "common.yaml", "train: {lr: 0.1, epochs: 5}\n")
    _write(tmp_path, "left.yaml", "_base_: common.yaml\ntrain: {lr: 0.5}\n")
    _write(tmp_path, "right.yaml", "_base_: common.yaml\ntrain: {seed: 3}\n")
    _write(tmp_path, "top.yaml", "_base_: [left.yaml, right.yaml]\n")
    cfg = load_config(tmp_path / "top.yaml")
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.seed) == (0.5, 5, 3)

    # Thirty levels of files that each include the next ten times: 10**30 includes, 31 reads.
    for level in range(30):
        _write(tmp_path, f"level{level}.yaml", "_base_: [" + ", ".join([f"level{level + 1}.yaml"] * 10) + "]\n")
    _write(tmp_path, "level30.yaml", "train: {epochs: 7}\n")
    reads = []
    real_read = config_module._read_yaml
    monkeypatch.setattr(config_module, "_read_yaml", lambda path: reads.append(path) or real_read(path))
    assert load_config(tmp_path / "level0.yaml").train.epochs == 7
    assert len(reads) == 31


def test_more_base_files_than_the_bound_are_refused(tmp_path):
    for level in range(70):
        _write(tmp_path, f"chain{level}.yaml", f"_base_: chain{level + 1}.yaml\n")
    _write(tmp_path, "chain70.yaml", "train: {epochs: 7}\n")
    with pytest.raises(ConfigError, match="reaches more than 64 files through _base_"):
        load_config(tmp_path / "chain0.yaml")


def test_a_config_file_too_big_to_be_a_config_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * 2**21 + "\n")
    with pytest.raises(ConfigError, match="more than g2l reads"):
        load_config(path)
