"""What each config value may be: one table of bounds, and the checks across keys.

``BOUNDS`` holds, for every key with a range, its lower bound (what the method needs) and, for the
sizes that decide an allocation, an upper bound far above any real model (what g2l builds: a config
or a checkpoint asking for more is refused before anything is allocated, g2l/models/checkpoint.py).
Every float must also be finite. ``validate_config`` adds the checks that read several keys.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from g2l.config.schema import Config, ConfigError, EvalConfig
from g2l.errors import quote


@dataclass(frozen=True)
class Bound:
    """``low <= value <= high`` (``<`` where open); ``limit``: the most g2l builds (sizes only);
    ``also``: values allowed besides the range (``auto``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    limit: int | None = None
    also: tuple = ()

    def problem(self, value) -> str | None:
        """None if ``value`` is allowed, else what it must be, in words ("at least 1")."""
        if value in self.also and type(value) is str:
            return None
        if isinstance(value, str):
            return self._words()
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if below or above:
            return self._words()
        if self.limit is not None and value > self.limit:
            return f"at most {self.limit:,} (far above any real model: g2l builds no more)"
        return None

    def _words(self) -> str:
        if self.high is not None:
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "2**63" if self.high == 2**63 else f"{self.high:g}"
            words = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        else:
            words = f"greater than {self.low:g}" if self.low_open else f"at least {self.low:g}"
        return f"{' or '.join(self.also)} or {words}" if self.also else words


def _at_least(low: int, limit: int | None = None) -> Bound:
    return Bound(low=low, limit=limit)


_POSITIVE = Bound(low=0, low_open=True)
_FRACTION = Bound(low=0, high=1, low_open=True)
_UNIT = Bound(low=0, high=1)

# The upper limits are sizes: the benchmarks use the values in parentheses.
BOUNDS = {
    "data.feature_dim": _at_least(1, 65536),  # F: frame feature width (500 to 4096)
    "data.num_pre_clips": _at_least(1, 65536),  # P: pre-clips per video (32 to 256)
    "data.num_workers": Bound(low=0, also=("auto",)),
    "model.num_clips": _at_least(1, 1024),  # N: the map holds N*N cells per channel (16 to 128)
    "model.hidden_dim": _at_least(1, 16384),  # H (64 to 512)
    "model.joint_dim": _at_least(1, 16384),  # the joint space (256)
    "model.map_kernel_size": _at_least(1, 63),  # the map convolutions' kernel side (5 to 9)
    "model.map_num_layers": _at_least(0, 64),  # map convolutions (MMN: 4 to 8)
    "model.text_num_layers": _at_least(1, 256),  # hidden layers averaged (1 to 4); never more than the backbone has
    "model.text_max_tokens": _at_least(3, 65536),  # the special tokens and at least one word (64)
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
    "loss.ssi_num_samples": _at_least(2),  # a standard error needs two brackets
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
    "train.betas": Bound(low=0, high=1, high_open=True),
    "train.warmup_epochs": _at_least(0),
    "train.milestones": _at_least(0),
    "train.lr_decay": _POSITIVE,
    "train.freeze_text_epochs": _at_least(0),
    "train.clip_grad_norm": _POSITIVE,
    "train.seed": Bound(low=0, high=2**63, high_open=True),
    "train.num_threads": _at_least(0),
    "log.num_example_predictions": _at_least(0),
    "log.num_example_maps": _at_least(0),
}
MAX_POOLING_COUNTS = 64  # entries of model.pooling_counts (1 to 4)


def size_limits(section: str) -> dict[str, int]:
    """``{name: the most g2l builds}`` for the sizes of ``section`` ("model" or "data")."""
    return {key.split(".", 1)[1]: bound.limit for key, bound in BOUNDS.items()
            if key.startswith(section + ".") and bound.limit is not None}


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
                problem = BOUNDS[key].problem(one) if key in BOUNDS else None
                if problem:
                    raise ConfigError(f"config key '{one_key}' must be {problem}, got {quote(one)}")


def validate_config(cfg: Config) -> None:
    """Every value in its allowed range, and cross-field checks whose failure would otherwise
    surface deep inside the model or after an epoch of training."""
    _check_values(cfg)
    m, d, t, lo = cfg.model, cfg.data, cfg.train, cfg.loss
    if d.num_pre_clips % m.num_clips != 0:  # num_clips >= 1: BOUNDS
        raise ConfigError(
            f"data.num_pre_clips ({d.num_pre_clips}) must be a positive multiple of model.num_clips ({m.num_clips})"
        )
    if not m.pooling_counts or any(c <= 0 for c in m.pooling_counts):
        raise ConfigError(f"model.pooling_counts must be a non-empty list of positive integers, got {quote(m.pooling_counts)}")
    if len(m.pooling_counts) > MAX_POOLING_COUNTS:
        raise ConfigError(f"model.pooling_counts holds {len(m.pooling_counts)} entries; at most {MAX_POOLING_COUNTS} "
                          "(the benchmarks use 1 to 4)")
    if (m.map_kernel_size - 1) * m.map_num_layers % 2 != 0:
        raise ConfigError("(model.map_kernel_size - 1) * model.map_num_layers must be even so the map keeps its size")
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
