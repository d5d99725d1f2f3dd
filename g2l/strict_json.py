"""JSON that strict parsers accept: ``dumps`` writes NaN and infinities as ``null`` (Python's
``json`` would write the bare tokens ``NaN`` and ``Infinity``, which JSON does not have), and
numpy scalars as plain numbers. Every JSON file or line g2l writes from computed numbers (metrics,
predictions, grounding results, exported metadata) goes through it."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, recursively (dicts, lists, tuples);
    numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs) -> str:
    """``json.dumps`` of ``finite(value)``, refusing anything that would still not be standard JSON."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
