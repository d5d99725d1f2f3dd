"""JSON in and out, strictly. ``dumps`` writes NaN and infinities as ``null`` (Python's ``json``
would write the bare tokens ``NaN`` and ``Infinity``, which JSON does not have), and numpy scalars
as plain numbers: every JSON file or line g2l writes from computed numbers (metrics, predictions,
grounding results, exported metadata) goes through it. ``loads`` reads JSON that people hand in
(annotations, predictions, model folders, pairs files) with every failure a ``ValueError``, and
refuses what Python's ``json`` lets through but JSON does not mean: the bare tokens ``NaN`` and
``Infinity``, numbers too large for a float (``1e400``, which would become infinity), and an object
that names a key twice (which would silently keep the last value)."""

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
    """``json.dumps`` of ``finite(value)``, refusing anything that would still not be standard JSON;
    nesting too deep to write (which ``loads`` may still have read) is a ``ValueError`` too."""
    try:
        return json.dumps(finite(value), allow_nan=False, **kwargs)
    except RecursionError as error:
        raise ValueError("arrays or objects nested too deep to write") from error


MAX_INTEGER_DIGITS = 300  # no time, count or score needs more, and a float cannot hold more


def loads(text: str | bytes, *, allow_non_finite: bool = False) -> Any:
    """``json.loads`` for files people hand in: whatever is wrong with ``text`` is a ``ValueError``
    that says what (``json.JSONDecodeError`` for the syntax), including nesting deeper than Python's
    recursion allows and an integer of more than ``MAX_INTEGER_DIGITS`` digits, which ``json.loads``
    raises as RecursionError or lets through, non-finite numbers (``NaN``, ``Infinity``, ``1e400``;
    read as floats with ``allow_non_finite``, for readers that check each number and drop what is
    bad, as the annotation parsers do) and a key repeated in one object."""
    floats = {} if allow_non_finite else {"parse_float": _finite_float, "parse_constant": _no_constant}
    try:
        return json.loads(text, parse_int=_bounded_int, object_pairs_hook=_unique_keys, **floats)
    except RecursionError as error:
        raise ValueError("arrays or objects nested too deep to read") from error


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer of {len(digits.lstrip('-'))} digits")
    return int(digits)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number too large for a float ({text[:40]})")
    return value


def _no_constant(token: str):
    raise ValueError(f"{token}, which is not a JSON number (write null)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) < len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {json.dumps(repeated[:60], ensure_ascii=False)} appears twice in one object")
    return result
