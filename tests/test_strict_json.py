"""g2l writes only standard JSON: non-finite numbers become null, numpy scalars plain numbers."""

import json
import math

import numpy as np
import pytest

from g2l import strict_json


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
