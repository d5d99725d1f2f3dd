"""g2l writes only standard JSON: non-finite numbers become null, numpy scalars plain numbers."""

import json
import math

import numpy as np
import pytest

from g2l.io import strict_json


def _strict_loads(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_and_numpy_scalars_numbers():
    value = {"a": math.nan, "b": [math.inf, 1.5, np.float32(2.0), np.int64(3)], "c": np.float64("nan"),
             "d": (-math.inf, "NaN"), "e": {"f": True, "g": None}}
    text = strict_json.dumps(value, sort_keys=True)
    assert _strict_loads(text) == {"a": None, "b": [None, 1.5, 2.0, 3], "c": None, "d": [None, "NaN"],
                                   "e": {"f": True, "g": None}}
    with pytest.raises(ValueError):
        _strict_loads(json.dumps(value["a"]))  # what the standard library writes for NaN is refused


def test_metrics_lines_with_a_nan_are_standard_json(tmp_path):
    from g2l.engine.run_dir import append_jsonl

    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"epoch": 1, "loss": float("nan"), "R1@0.5": np.float32(0.25)})
    assert _strict_loads(path.read_text()) == {"epoch": 1, "loss": None, "R1@0.5": 0.25}


def test_loads_turns_every_failure_into_a_value_error():
    assert strict_json.loads('{"a": [1, 2.5, -3]}') == {"a": [1, 2.5, -3]}
    assert strict_json.loads("-" + "9" * 300) == -int("9" * 300)  # the longest integer still read
    for text, says in [("[" * 100_000 + "]" * 100_000, "nested too deep"), ("9" * 301, "an integer of 301 digits"),
                       ('{"a": ', "Expecting value")]:
        with pytest.raises(ValueError, match=says):
            strict_json.loads(text)


@pytest.mark.parametrize("text, says", [
    ("NaN", "NaN, which is not a JSON number"), ('{"a": -Infinity}', "-Infinity, which is not a JSON number"),
    ("1e400", "a number too large for a float \\(1e400\\)"), ("[-1E999]", "too large for a float"),
    ('{"id": 1, "x": {"k": 1, "k": 2}}', 'the key "k" appears twice in one object'),
])
def test_loads_refuses_what_json_does_not_mean(text, says):
    """Python's json reads these as inf, nan or the last of two values; loads refuses them."""
    with pytest.raises(ValueError, match=says):
        strict_json.loads(text)
    assert strict_json.loads("[1e308, -2.5e-308, 0.0]") == [1e308, -2.5e-308, 0.0]
    assert strict_json.loads('{"a": {"k": 1}, "b": {"k": 2}}') == {"a": {"k": 1}, "b": {"k": 2}}  # one key per object


def test_dumps_turns_nesting_too_deep_to_write_into_a_value_error():
    deep = strict_json.loads("[" * 900 + "]" * 900)  # read, but finite() cannot walk it
    with pytest.raises(ValueError, match="nested too deep to write"):
        strict_json.dumps(deep)


def test_readers_that_drop_bad_numbers_themselves_may_read_them():
    assert strict_json.loads('[1e400, NaN]', allow_non_finite=True)[0] == math.inf
    with pytest.raises(ValueError, match="appears twice"):
        strict_json.loads('{"a": 1, "a": 2}', allow_non_finite=True)
