"""Compatibility with the keys that older configs and checkpoints carry: the one place that knows them.

* ``train.bf16: true|false``, the flag ``train.precision`` replaced, reads as ``auto|fp32``.
* ``model.map_compute`` (``cropped`` or ``full``: the same results; the map is always computed
  cropped now, the full map is a test reference) is accepted and ignored.
* ``loss.kernels`` (``auto|numba|torch``) left the config: the environment variable ``G2L_KERNELS``
  chooses the kernels (g2l/losses/kernels.py). ``auto`` is accepted silently; another value is
  accepted with a warning that names the variable.
* The loss keys retired after the ablation (``RETIRED_LOSS_KEYS``) load when they carry today's
  behaviour and are refused, naming the git tag, otherwise.
"""

from __future__ import annotations

import warnings
from typing import Any

from g2l.config.schema import ConfigError, LossConfig, ModelConfig, TrainConfig
from g2l.errors import quote

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


_MOVED_TO_ENVIRONMENT = {"kernels": ("auto", "numba", "torch")}
_IGNORED = {"map_compute": ("cropped", "full")}


def read_retired(section: Any, prefix: str, name: str, value: Any) -> bool:
    """Read ``prefix + name = value`` if it is a retired or renamed key (True), or leave it to the
    schema (False). A retired key with a value that no longer means anything is a ConfigError."""
    key = f"{prefix}{name}"
    if key == "train.bf16" and isinstance(section, TrainConfig):
        if not isinstance(value, bool):
            raise ConfigError(f"config key 'train.bf16' must be true or false, got {quote(value)} "
                              "(it is the former name of train.precision: use train.precision=fp32|bf16|auto)")
        section.precision = "auto" if value else "fp32"
        return True
    if isinstance(section, ModelConfig) and name in _IGNORED:
        if value not in _IGNORED[name]:
            raise ConfigError(f"config key 'model.{name}' was retired (the map is always computed cropped, with "
                              f"the same results); remove the key, got {quote(value)}")
        return True
    if isinstance(section, LossConfig) and name in _MOVED_TO_ENVIRONMENT:
        allowed = _MOVED_TO_ENVIRONMENT[name]
        if value not in allowed:
            raise ConfigError(f"config key 'loss.{name}' is no longer a config key; remove it and set the "
                              f"environment variable G2L_KERNELS to one of {', '.join(allowed)}, got {quote(value)}")
        if value != "auto":
            warnings.warn(f"config key 'loss.{name}: {value}' is no longer read; set the environment variable "
                          f"G2L_KERNELS={value} to choose the kernels", stacklevel=2)
        return True
    if isinstance(section, LossConfig) and name in RETIRED_LOSS_KEYS:
        _read_retired_loss_key(section, name, value)
        return True
    return False


def retired_last(overrides: dict) -> dict:
    """``overrides`` with the retired loss keys last: gcl_form reads the sentence_contrast set beside it."""
    return dict(sorted(overrides.items(), key=lambda item: item[0] in RETIRED_LOSS_KEYS))
