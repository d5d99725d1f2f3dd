"""The configuration, as a package:

* ``schema.py``: the dataclasses, whose defaults (G2L) are the single source of truth;
* ``bounds.py``: one table of what each value may be, and the checks across keys;
* ``compat.py``: the keys older configs and checkpoints carry (renamed, retired, moved out);
* ``load.py``: defaults, then YAML files (``_base_``), then dotted overrides, checked strictly;
* ``strict_yaml.py``: the bounded YAML dialect the files are read in.

Import from here: ``from g2l.config import Config, load_config``.
"""

from g2l.config.bounds import BOUNDS, MAX_POOLING_COUNTS, metric_names, size_limits, validate_config
from g2l.config.compat import RETIRED_LOSS_KEYS
from g2l.config.load import (
    LOCAL_PATH_KEYS,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
    parse_override,
    portable_config_dict,
    save_config,
)
from g2l.config.schema import (
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    LogConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = [
    "BOUNDS", "LOCAL_PATH_KEYS", "MAX_POOLING_COUNTS", "RETIRED_LOSS_KEYS", "Config", "ConfigError", "DataConfig",
    "EvalConfig", "LogConfig", "LossConfig", "ModelConfig", "TrainConfig", "apply_overrides", "config_from_dict",
    "config_to_dict", "config_to_yaml", "load_config", "metric_names", "parse_override", "portable_config_dict",
    "save_config", "size_limits", "validate_config",
]
