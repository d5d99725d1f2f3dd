"""Loading a configuration: the schema's defaults (g2l/config/schema.py), then YAML files, then overrides.

YAML files hold overrides only. A file may name the files it builds on with ``_base_`` (a path or a
list of paths relative to the file); they are applied first, in order, each file once. Command-line overrides are
dotted, ``model.num_clips=64``, and their values are parsed as YAML (``train.milestones=[8,13]``).
An unknown key or a value of the wrong type is a ``ConfigError`` that names the key.

With g2l/config/strict_yaml.py (the bounded reader of the text), the only module that knows YAML;
retired keys go to g2l/config/compat.py, ranges to g2l/config/bounds.py.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

from g2l.config import strict_yaml
from g2l.config.bounds import validate_config
from g2l.config.compat import read_retired, retired_last
from g2l.config.schema import Config, ConfigError
from g2l.errors import MAX_QUOTE_CHARS, path_problem, quote

# Bounds on what a config file may make g2l read (a config is about 80 values, three levels deep).
# g2l/config/strict_yaml.py bounds what one document may expand to.
MAX_CONFIG_FILE_BYTES = 2**20
MAX_BASE_FILES = 64  # files one config reaches through _base_, itself included


def _check_value(value: Any, expected: Any, key: str) -> Any:
    """Return ``value`` converted to ``expected`` (an annotation), or raise ConfigError naming ``key``."""
    origin = typing.get_origin(expected)
    if dataclasses.is_dataclass(expected):
        raise ConfigError(f"config key '{key}' is a section; set its fields ({key}.<field>=...), not a value")
    if origin in (list, tuple):
        (item_type,) = typing.get_args(expected)[:1]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list of {item_type.__name__}, got {quote(value)}")
        return [_check_value(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is Literal:
        allowed = typing.get_args(expected)
        if any(value == option and type(value) is type(option) for option in allowed):
            return value
        raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}, got {quote(value)}")
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            try:
                return _check_value(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}' has a value of the wrong type: {quote(value)}")
    if expected is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key '{key}' must be null, got {quote(value)}")
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {quote(value)}")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= 2**63:  # nothing counts that far; a bigger one fails deep in torch or numpy
                raise ConfigError(f"config key '{key}' must be an integer below 2**63, got {quote(value)}")
            return value
        raise ConfigError(f"config key '{key}' must be an integer, got {quote(value)}")
    if expected is float:
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**1000):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}' must be a number, got {quote(value)}")
    if expected is str:
        if isinstance(value, str):
            return value
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63):
            return str(value)
        raise ConfigError(f"config key '{key}' must be a string, got {quote(value)}")
    raise ConfigError(f"config key '{key}' has an unsupported type {expected!r}")


def _apply(section: Any, overrides: dict, prefix: str) -> None:
    hints = typing.get_type_hints(type(section))
    if prefix == "loss.":
        overrides = retired_last(overrides)
    for name, value in overrides.items():
        if not isinstance(name, str):  # YAML and pickle allow numbers, lists or null as keys
            raise ConfigError(f"config key {quote(name)}{f' in section {prefix[:-1]}' if prefix else ''} is not a "
                              "name; keys are words such as model or num_clips")
        key = f"{prefix}{name}"
        if read_retired(section, prefix, name, value):
            continue
        if name not in hints:
            known = ", ".join(sorted(hints))
            shown = key if len(key) <= MAX_QUOTE_CHARS else key[:MAX_QUOTE_CHARS - 3] + "..."
            raise ConfigError(f"unknown config key '{shown}' (known keys here: {known})")
        expected = hints[name]
        if dataclasses.is_dataclass(expected):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' is a section and must be a mapping, got {quote(value)}")
            _apply(getattr(section, name), value, f"{key}.")
        else:
            setattr(section, name, _check_value(value, expected, key))


def _read_yaml(path: Path) -> dict:
    from g2l.io.safe_files import UnsafeFileError, open_regular_file

    problem = path_problem(path)  # also a name too long or holding a NUL: "cannot be reached", ...
    if problem:
        fix = "check the path" if problem.endswith("does not exist") else "pass a YAML config file"
        raise ConfigError(f"config file {path} {problem}; {fix}")
    try:
        with open_regular_file(path, what=f"config file {path}", max_bytes=MAX_CONFIG_FILE_BYTES) as file:
            raw = file.read(MAX_CONFIG_FILE_BYTES + 1)
    except (UnsafeFileError, OSError) as error:
        raise ConfigError(str(error) if isinstance(error, UnsafeFileError) else
                          f"config file {path} could not be read ({error.strerror or error}); check the path") from None
    if len(raw) > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(f"config file {path} grew past {MAX_CONFIG_FILE_BYTES:,} bytes while it was read; "
                          "pass a YAML config file")
    try:
        data = strict_yaml.loads(raw.decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; pass a YAML config file") from None
    except strict_yaml.YAMLLimitError as error:
        raise ConfigError(f"config file {path} {error}") from None
    except strict_yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML {error}; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def _base_names(path: Path, data: dict) -> list[str]:
    """The ``_base_`` entry of ``data`` (read from ``path``) as a list of file names."""
    bases = data.pop("_base_", [])
    names = [bases] if isinstance(bases, str) else bases
    if not isinstance(names, list) or not all(isinstance(name, str) and name and "\0" not in name for name in names):
        raise ConfigError(f"config file {path}: _base_ must be a file name or a list of file names (relative to the "
                          f"file), got {quote(bases)}")
    return names


def _layers(path: Path) -> list[dict]:
    """The override dicts of ``path`` and of the files it builds on through ``_base_``, bases first.
    A file that two bases share is read and applied once, at its first place (so a later base does
    not undo what an earlier one set over it); a file that includes itself, or more than
    MAX_BASE_FILES files in all, is a ConfigError."""
    layers: list[dict] = []
    read: set[Path] = set()

    def visit(path: Path, chain: tuple[Path, ...]) -> None:
        resolved = path.resolve()
        if resolved in chain:
            raise ConfigError(f"config file {resolved} includes itself through _base_")
        if resolved in read:
            return
        if len(read) >= MAX_BASE_FILES:
            raise ConfigError(f"config file {chain[0]} reaches more than {MAX_BASE_FILES} files through _base_; "
                              "a config builds on a few")
        read.add(resolved)
        data = _read_yaml(path)  # messages name the path as given (a link is reported as one)
        for base in _base_names(path, data):
            visit(resolved.parent / base, chain + (resolved,))
        layers.append(data)

    visit(path, ())
    return layers


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.num_clips=64"`` -> ``("model.num_clips", 64)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = strict_yaml.loads(raw) if raw.strip() else ""
    except strict_yaml.YAMLLimitError as error:
        raise ConfigError(f"override of '{key.strip()[:MAX_QUOTE_CHARS]}' {error}") from None
    except strict_yaml.YAMLError:
        value = raw
    return key.strip(), value


def _nest(key: str, value: Any) -> dict:
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | list | None = None, overrides: list[str] | None = None) -> Config:
    """The defaults, then the YAML file(s) in order (each with its bases), then dotted overrides,
    checked strictly. Several files stack: ``[dataset.yaml, ablation/ssi.yaml]``."""
    cfg = Config()
    paths = [] if path is None else list(path) if isinstance(path, (list, tuple)) else [path]
    for one in paths:
        for layer in _layers(Path(one)):
            _apply(cfg, layer, "")
    return apply_overrides(cfg, overrides or [])


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply dotted ``key=value`` overrides in place, then check the whole config."""
    for text in overrides:
        key, value = parse_override(text)
        _apply(cfg, _nest(key, value), "")
    validate_config(cfg)
    return cfg


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config from ``config_to_dict`` output (e.g. the copy stored in a checkpoint)."""
    cfg = Config()
    _apply(cfg, data, "")
    validate_config(cfg)
    return cfg


LOCAL_PATH_KEYS = (("data", "train_annotations"), ("data", "val_annotations"), ("data", "test_annotations"),
                   ("data", "durations_csv"), ("data", "features"), ("log", "output_dir"))


def portable_config_dict(cfg_dict: dict) -> dict:
    """A copy of a config dict to publish: every path of the machine it was trained on (data
    files, the runs folder) reduced to its last name, so that shipped and exported files carry no
    machine-local paths. A run's own checkpoints keep the full paths: resuming reads them."""
    out = {section: dict(values) if isinstance(values, dict) else values for section, values in cfg_dict.items()}
    for section, key in LOCAL_PATH_KEYS:
        value = out.get(section, {}).get(key) if isinstance(out.get(section), dict) else None
        if isinstance(value, str) and value:
            out[section][key] = Path(value).name
    return out


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Config) -> str:
    import yaml

    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from g2l.io.atomic import write_text_atomic

    write_text_atomic(path, config_to_yaml(cfg))

