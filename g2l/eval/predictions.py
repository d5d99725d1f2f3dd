"""The predictions file, and re-scoring it with no model code.

A predictions file is JSON lines, one query per line::

    {"video": str, "query": str, "duration": float, "gt": [s, e],
     "candidates": [[s, e, score], ...],          # ranked after NMS, at least 10 kept when available
     "score_map": [[...], ...],                   # optional: t x t, 0 on invalid cells
     "saliency": [...]}                           # optional (QVHighlights): one score per 2-second clip

Times are seconds. ``gt`` may also be a list of windows ``[[s, e], ...]`` (QVHighlights); a
candidate's IoU is then its best over them. When a line has ``score_map``, re-scoring derives the
candidates from the map (valid cells are the non-zero ones), ranks them and applies NMS
(``rank_moments``, as the run did; a valid cell scored exactly 0, which needs a contrast cosine of
-1, is a candidate of the run but not of the map); otherwise it takes ``candidates`` as ranked.
``saliency`` is the highlight curve derived from the map (g2l/eval/qvhighlights.py). Floats are
written from float32 values, so the file reproduces the metrics of the run that wrote it exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from g2l.errors import G2LError, path_problem
from g2l.eval.metrics import grounding_metrics
from g2l.io import strict_json
from g2l.io.atomic import atomic_path
from g2l.io.limits import MAX_DATA_FILE_BYTES
from g2l.io.safe_files import open_regular_file
from g2l.ops.spans import F32, ranked_candidates


class PredictionsError(G2LError):
    """A predictions file that cannot be read; the message names the file and line."""


@dataclass
class Prediction:
    video: str
    query: str
    duration: float
    gt: np.ndarray  # (2,) or (g, 2) seconds
    candidates: np.ndarray  # (k, 3): start_s, end_s, score, ranked
    score_map: np.ndarray | None = None  # (t, t), 0 on invalid cells
    saliency: np.ndarray | None = None  # (c,) one score per 2-second clip (QVHighlights)

    def to_json(self) -> str:
        record = {
            "video": self.video,
            "query": self.query,
            "duration": float(self.duration),
            "gt": np.asarray(self.gt, dtype=F32).astype(float).tolist(),
            "candidates": np.asarray(self.candidates, dtype=F32).astype(float).tolist(),
        }
        if self.score_map is not None:
            record["score_map"] = np.asarray(self.score_map, dtype=F32).astype(float).tolist()
        if self.saliency is not None:
            record["saliency"] = np.asarray(self.saliency, dtype=F32).astype(float).tolist()
        return strict_json.dumps(record)


def write_predictions(path: str | Path, predictions: Iterable[Prediction]) -> int:
    """Write predictions atomically (temporary file, then rename); returns the number of lines."""
    count = 0
    with atomic_path(path) as tmp, tmp.open("w") as handle:
        for prediction in predictions:
            handle.write(prediction.to_json() + "\n")
            count += 1
    return count


def _as_window_array(value, where: str) -> np.ndarray:
    shape_error = PredictionsError(f"{where}: 'gt' must be [start, end] or [[start, end], ...] in seconds, got {value!r:.80}")
    if isinstance(value, (str, bool)) or any(isinstance(v, (str, bool)) for v in np.ravel(np.asarray(value, dtype=object))):
        raise shape_error
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise shape_error from None
    if not (array.shape == (2,) or (array.ndim == 2 and array.shape[1] == 2 and array.shape[0] >= 1)):
        raise shape_error
    if not np.all(np.isfinite(array)):
        raise PredictionsError(f"{where}: 'gt' holds a non-finite time")
    windows = array.reshape(-1, 2)
    if np.any(windows[:, 0] >= windows[:, 1]):
        raise PredictionsError(f"{where}: a 'gt' window does not end after it starts ({value!r:.80}); each window is "
                               "[start, end] with start < end")
    return array.astype(F32)


def _parse_line(line: str, where: str) -> Prediction:
    try:
        record = strict_json.loads(line)
    except ValueError as error:  # bad syntax, nesting too deep, an integer too long
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise PredictionsError(f"{where}: not valid JSON ({reason}); each line must be one JSON object") from None
    if not isinstance(record, dict):
        raise PredictionsError(f"{where}: each line must be a JSON object")
    missing = [key for key in ("video", "query", "duration", "gt") if key not in record]
    if "candidates" not in record and "score_map" not in record:
        missing.append("candidates (or score_map)")
    if missing:
        raise PredictionsError(f"{where}: missing key(s) {', '.join(missing)}")
    duration = record["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration <= 0:
        raise PredictionsError(f"{where}: 'duration' must be a positive number, got {duration!r}")
    gt = _as_window_array(record["gt"], where)
    candidates = np.zeros((0, 3), dtype=F32)
    if "candidates" in record:
        try:
            candidates = np.asarray(record["candidates"], dtype=F32).reshape(-1, 3)
        except (TypeError, ValueError):
            raise PredictionsError(f"{where}: 'candidates' must be a list of [start, end, score]") from None
    score_map = None
    if record.get("score_map") is not None:
        try:
            score_map = np.asarray(record["score_map"], dtype=F32)
        except (TypeError, ValueError):
            raise PredictionsError(f"{where}: 'score_map' must be a square nested list of numbers") from None
        if score_map.ndim != 2 or score_map.shape[0] != score_map.shape[1]:
            raise PredictionsError(f"{where}: 'score_map' must be square, got shape {score_map.shape}")
    saliency = record.get("saliency")
    if saliency is not None:
        if not isinstance(saliency, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in saliency):
            raise PredictionsError(f"{where}: 'saliency' must be a list of numbers, one per 2-second clip")
        saliency = np.asarray(saliency, dtype=F32)
        if not np.all(np.isfinite(saliency)):
            raise PredictionsError(f"{where}: 'saliency' holds a non-finite number")
    return Prediction(str(record["video"]), str(record["query"]), float(duration), gt, candidates, score_map, saliency)


def read_predictions(path: str | Path) -> list[Prediction]:
    """Parse a predictions file; a malformed line is a PredictionsError naming file and line."""
    path = Path(path)
    problem = path_problem(path)  # a link to /dev/zero would be read for ever
    if problem and problem.endswith("does not exist"):
        raise PredictionsError(f"predictions file {path} {problem}; check the path")
    if problem:
        raise PredictionsError(f"predictions path {path} {problem}; pass a predictions file (JSON lines)")
    predictions = []
    with open_regular_file(path, what=f"predictions file {path}", max_bytes=MAX_DATA_FILE_BYTES) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PredictionsError(
                    f"{path}, line {number}: not UTF-8 text; a predictions file is JSON lines (is it a binary file?)"
                ) from None
            if line.strip():
                predictions.append(_parse_line(line, f"{path}, line {number}"))
    if not predictions:
        raise PredictionsError(f"predictions file {path} holds no predictions")
    return predictions


def rescore_predictions(
    predictions: Sequence[Prediction],
    nms_thresh: float = 0.5,
    recall_at: Sequence[int] = (1, 5),
    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
) -> dict[str, float]:
    """Metrics of a predictions file: from score maps (ranked, NMS) where present, else candidates."""
    candidate_spans = []
    for prediction in predictions:
        if prediction.score_map is not None:
            spans, _ = ranked_candidates(prediction.score_map, prediction.duration, nms_thresh, max(recall_at))
        else:
            spans = prediction.candidates[:, :2]
        candidate_spans.append(spans)
    return grounding_metrics(candidate_spans, [p.gt for p in predictions], recall_at, iou_thresholds)
