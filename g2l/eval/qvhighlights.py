"""QVHighlights scored as its users score it: Moment-DETR's ``standalone_eval/eval.py``, in numpy.

Papers on QVHighlights report the numbers of that script, and this module computes the same
numbers (``tests/eval/test_qvhighlights.py`` checks them against a port of the script, and on
Moment-DETR's sample submission they equal its recorded metrics). Metrics are fractions in
[0, 1] under the script's own names; the script prints them in percent, rounded to 2 places.

Moment retrieval (``MR-``), each query with one or more ground-truth windows:

* ``MR-full-mAP@m``: detection AP at IoU ``m`` (ActivityNet's, via MMAction2): the first 10
  predicted windows *as listed*, then sorted by score (a stable sort), are matched greedily; a
  window is a true positive when some ground-truth window not matched yet has IoU >= m with it,
  taking the highest-IoU one (windows tied in IoU are tried in the order of the script's own call,
  ``np.argsort(iou)[::-1]``). AP is VOC's interpolated area under precision/recall, averaged over
  queries. ``MR-full-mAP`` is its mean over m = 0.5, 0.55, ..., 0.95. ``MR-{short,middle,long}-mAP``
  do the same on the windows of length in (0, 10], (10, 30], (30, 150] seconds, over the queries
  that have one (a key is left out when no query does).
* ``MR-full-R1@m``: the *first listed* window hits when its IoU with the ground-truth window it
  overlaps most is >= m (that IoU is intersection over hull, in float64; g2l's ``R1@m`` takes
  float32, so the two can differ at an exact tie).
* A query with no predicted window scores AP 0 and misses R1 (the script stops with an
  IndexError on such a query).

Highlight detection (``HL-``): every 2-second clip of the video (``int(duration / 2)`` of them)
has saliency scores 0-4 from 3 annotators (0 outside ``relevant_clip_ids``); a clip is positive
at level ``min-Fair`` / ``min-Good`` / ``min-VeryGood`` when its score is >= 2 / 3 / 4.

* ``HL-min-*-Hit1``: the clip with the highest predicted saliency (the first, on ties) is
  positive for at least one annotator; averaged over queries.
* ``HL-min-*-mAP``: per query and annotator, the video2gif AP (precision at every score threshold
  that recalls a new positive, interpolated, averaged; 1 when every clip is positive, 0 when none
  is), over the predicted scores cut or zero-padded to the video's clips; averaged over both.

g2l has no saliency head: :func:`highlight_curve` derives each clip's saliency from the 2D map,
as the mean score of the valid map cells (moments) whose span covers the clip's midpoint. Read
off an oracle map (cell score = IoU with the best true window), the mean gives QVHighlights val
HL-min-VeryGood mAP 43.6 / HIT@1 75.5 where the max of the covering cells gives 37.7 / 63.5 (the
max ties every clip of the best moment, and follows the noisiest cell); bench/qvhighlights_floors.py.

The submission layout (JSON lines, Moment-DETR's ``standalone_eval/README.md``)::

    {"qid": 2579, "query": "...", "vid": "NUsG9BgSes0_210.0_360.0",
     "pred_relevant_windows": [[0.0, 70.0, 0.9986], ...],    # [start_s, end_s, score], best first
     "pred_saliency_scores": [-0.24, -0.37, ...]}              # optional: one per 2-second clip
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from g2l.errors import G2LError, path_problem
from g2l.io import strict_json
from g2l.io.atomic import atomic_path
from g2l.io.limits import MAX_DATA_FILE_BYTES
from g2l.io.safe_files import open_regular_file
from g2l.ops.spans import F32, cell_spans, ranked_candidates

CLIP_LENGTH_S = 2.0  # QVHighlights' saliency clips
IOU_THRESHOLDS = tuple(float(f"{x:.2f}") for x in np.linspace(0.5, 0.95, 10))  # the script's, exactly
MAX_PRED_WINDOWS = 10  # the script keeps the first 10 listed windows for mAP
LENGTH_RANGES = {"short": (0, 10), "middle": (10, 30), "long": (30, 150)}  # (min, max] seconds; "full": all
SALIENCY_LEVELS = {"Fair": 2, "Good": 3, "VeryGood": 4}  # the lowest annotator score of a positive clip
BRIEF_IOUS = {"mAP@0.5": 0.5, "mAP@0.75": 0.75}
R1_IOUS = (0.5, 0.7)


class QVHighlightsError(G2LError):
    """A QVHighlights annotation or submission file that cannot be scored; the message names it."""


@dataclass
class QueryTruth:
    """One line of ``highlight_{split}_release.jsonl``."""

    qid: int
    vid: str
    query: str
    duration_s: float
    windows_s: np.ndarray  # (g, 2) float64, as written
    saliency: np.ndarray | None  # (c, 3) annotator scores 0-4 of every 2-second clip; None when not annotated


@dataclass
class SubmissionEntry:
    """One line of a submission."""

    qid: int
    query: str
    vid: str
    windows: np.ndarray  # (k, 3) float64: start_s, end_s, score, in the listed order
    saliency: np.ndarray | None = None  # (c,) float64

    def to_json(self) -> str:
        record = {"qid": self.qid, "query": self.query, "vid": self.vid,
                  "pred_relevant_windows": np.asarray(self.windows, dtype=np.float64).tolist()}
        if self.saliency is not None:
            record["pred_saliency_scores"] = np.asarray(self.saliency, dtype=np.float64).tolist()
        return strict_json.dumps(record)


# ---------------------------------------------------------------------------------------------
# Moment retrieval


def _stack(arrays: Sequence[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged ``(n_i, width)`` arrays -> zero-padded ``(q, n_max, width)`` float64 and counts ``(q,)``."""
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    out = np.zeros((len(arrays), max(int(counts.max(initial=0)), 1), width))
    for row, array in enumerate(arrays):
        out[row, : len(array)] = array
    return out, counts


def _cross_iou(spans: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU ``(..., k, g)`` of ``spans (..., k, 2)`` and ``others (..., g, 2)``, union = sum of lengths minus
    intersection: the script's ``compute_temporal_iou_batch_cross``, batched."""
    left = np.maximum(spans[..., :, None, 0], others[..., None, :, 0])
    right = np.minimum(spans[..., :, None, 1], others[..., None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = (spans[..., 1] - spans[..., 0])[..., :, None] + (others[..., 1] - others[..., 0])[..., None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def moment_average_precision(
    pred_windows: Sequence[np.ndarray], gt_windows: Sequence[np.ndarray], iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> np.ndarray:
    """Detection AP ``(q, m)`` of each query's ``(k, 3)`` predicted windows against its ``(g, 2)``
    ground truth (``g >= 1``), at each IoU threshold (see the module docstring)."""
    preds = [np.asarray(p, dtype=np.float64).reshape(-1, 3)[:MAX_PRED_WINDOWS] for p in pred_windows]
    preds = [p[np.argsort(-p[:, 2], kind="stable")] for p in preds]  # Python's sort on -score is stable
    pred, num_preds = _stack(preds, 3)  # (q k 3)
    gt, num_gts = _stack([np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in gt_windows], 2)  # (q g 2)
    q, k, g = pred.shape[0], pred.shape[1], gt.shape[1]
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)  # (m,)
    pred_valid = np.arange(k)[None, :] < num_preds[:, None]  # (q k)
    iou = np.where(np.arange(g)[None, None, :] < num_gts[:, None, None], _cross_iou(pred[..., :2], gt), -np.inf)
    # Ground-truth windows best IoU first, by the script's own call on each prediction's row (so ties
    # fall alike); queries with the same number of windows are sorted together, padding stays last.
    order = np.broadcast_to(np.arange(g), (q, k, g)).copy()  # (q k g)
    for n in np.unique(num_gts):
        rows = num_gts == n
        order[rows, :, :n] = np.argsort(iou[rows, :, :n], axis=-1)[..., ::-1]
    passes = np.take_along_axis(iou, order, axis=-1)[:, :, None, :] >= thresholds[None, None, :, None]  # (q k m g)
    locked = np.zeros((q, len(thresholds), g), dtype=bool)  # ground truth already matched, by window index
    tp = np.zeros((q, len(thresholds), k))
    rows, cols = np.arange(q)[:, None], np.arange(len(thresholds))[None, :]
    for r in range(k):  # greedy, best score first: each prediction takes the best free window it passes
        order_r = np.broadcast_to(order[:, r, None, :], locked.shape)  # (q m g)
        eligible = passes[:, r] & ~np.take_along_axis(locked, order_r, axis=-1)  # (q m g), in IoU order
        hit = eligible.any(axis=-1) & pred_valid[:, r, None]  # (q m)
        matched = np.take_along_axis(order_r, eligible.argmax(axis=-1)[..., None], axis=-1)[..., 0]  # (q m)
        locked[rows, cols, matched] |= hit
        tp[:, :, r] = hit
    fp = pred_valid[:, None, :] & (tp == 0)
    tp_sum, fp_sum = np.cumsum(tp, axis=-1), np.cumsum(fp, axis=-1)  # (q m k)
    recall = tp_sum / np.maximum(num_gts, 1)[:, None, None]
    precision = np.divide(tp_sum, tp_sum + fp_sum, out=np.zeros_like(tp_sum), where=tp_sum + fp_sum > 0)
    # VOC interpolation: precision made non-increasing from the right, summed over the recall steps.
    shape = (q, len(thresholds), 1)
    precision = np.concatenate([np.zeros(shape), precision, np.zeros(shape)], axis=-1)
    recall = np.concatenate([np.zeros(shape), recall, np.ones(shape)], axis=-1)
    precision = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]
    step = recall[..., 1:] - recall[..., :-1]
    return np.where(step != 0, step * precision[..., 1:], 0.0).sum(axis=-1)


def moment_recall_at_one(
    pred_windows: Sequence[np.ndarray], gt_windows: Sequence[np.ndarray], iou_thresholds: Sequence[float] = R1_IOUS,
) -> np.ndarray:
    """Hits ``(q, m)`` of each query's first listed window (see the module docstring)."""
    first = np.array([np.asarray(p, dtype=np.float64).reshape(-1, 3)[0, :2] if len(p) else (np.nan, np.nan)
                      for p in pred_windows]).reshape(-1, 2)  # (q 2)
    gt, num_gts = _stack([np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in gt_windows], 2)  # (q g 2)
    iou = _cross_iou(first[:, None, :], gt)[:, 0, :]  # (q g)
    iou = np.where(np.arange(gt.shape[1])[None, :] < num_gts[:, None], iou, -np.inf)
    chosen = gt[np.arange(len(gt)), np.argmax(iou, axis=1)]  # (q 2): the window it overlaps most (first on ties)
    inter = np.maximum(0, np.minimum(first[:, 1], chosen[:, 1]) - np.maximum(first[:, 0], chosen[:, 0]))
    hull = np.maximum(first[:, 1], chosen[:, 1]) - np.minimum(first[:, 0], chosen[:, 0])
    paired = np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)
    paired = np.where(np.isnan(first[:, 0]), 0.0, paired)  # no predicted window: a miss
    return paired[:, None] >= np.asarray(iou_thresholds, dtype=np.float64)[None, :]


def _in_range(windows: np.ndarray, low: float, high: float) -> np.ndarray:
    lengths = windows[:, 1] - windows[:, 0]
    return windows[(low < lengths) & (lengths <= high)]


def moment_retrieval_metrics(pred_windows: Sequence[np.ndarray], gt_windows: Sequence[np.ndarray]) -> dict[str, float]:
    """The script's ``MR-`` brief metrics of queries with ``(k, 3)`` predictions and ``(g, 2)`` truths."""
    ap = moment_average_precision(pred_windows, gt_windows)  # (q m)
    per_threshold = ap.mean(axis=0)
    out = {"MR-full-mAP": float(np.mean(per_threshold))}
    for name, iou in BRIEF_IOUS.items():
        out[f"MR-full-{name}"] = float(per_threshold[IOU_THRESHOLDS.index(iou)])
    for name, (low, high) in LENGTH_RANGES.items():
        kept = [(p, _in_range(np.asarray(g, dtype=np.float64).reshape(-1, 2), low, high))
                for p, g in zip(pred_windows, gt_windows)]
        kept = [(p, g) for p, g in kept if len(g)]
        if kept:
            out[f"MR-{name}-mAP"] = float(np.mean(moment_average_precision(*zip(*kept)).mean(axis=0)))
    hits = moment_recall_at_one(pred_windows, gt_windows, R1_IOUS)  # (q 2)
    for column, iou in enumerate(R1_IOUS):
        out[f"MR-full-R1@{iou:g}"] = float(hits[:, column].mean())
    return out


# ---------------------------------------------------------------------------------------------
# Highlight detection


def _fit(scores: np.ndarray, num_clips: int) -> np.ndarray:
    """Predicted saliency cut, or zero-padded, to ``num_clips`` (the script's ``compute_ap_from_tuple``)."""
    out = np.zeros(num_clips)
    kept = np.asarray(scores, dtype=np.float64)[:num_clips]
    out[: len(kept)] = kept
    return out


def highlight_average_precision(pred_saliency: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """video2gif AP ``(n, a)`` of scores ``(n, c)`` against binary labels ``(n, c, a)`` of ``a`` annotators."""
    n, c, _ = positive.shape
    order = np.argsort(-pred_saliency, axis=1, kind="stable")  # best first; ties are grouped below
    scores = np.take_along_axis(pred_saliency, order, axis=1)  # (n c)
    labels = np.take_along_axis(positive, order[..., None], axis=1)  # (n c a)
    group_end = np.concatenate([np.diff(scores, axis=1) != 0, np.ones((n, 1), dtype=bool)], axis=1)  # (n c)
    group_start_idx = np.maximum.accumulate(
        np.where(np.concatenate([np.ones((n, 1), dtype=bool), group_end[:, :-1]], axis=1), np.arange(c), 0), axis=1)
    true_pos = np.cumsum(labels, axis=1)  # (n c a)
    total = true_pos[:, -1:, :]  # (n 1 a)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = (true_pos / total).astype(np.float32)  # the float32 recall of the script's get_ap
    precision = np.where(group_end[..., None], true_pos / np.arange(1, c + 1)[None, :, None], 0.0)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # best precision at this recall or more
    before = group_start_idx - 1  # the previous threshold's last clip
    previous_recall = np.where(before[..., None] >= 0,
                               np.take_along_axis(recall, np.maximum(before, 0)[..., None], axis=1), np.float32(0))
    counted = group_end[..., None] & (recall != previous_recall)  # thresholds that recall a new positive
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(counted, precision, 0.0).sum(axis=1) / counted.sum(axis=1)
    total = total[:, 0, :]
    return np.where(total == 0, 0.0, np.where(total == c, 1.0, ap))


def highlight_metrics(pred_saliency: Sequence[np.ndarray], gt_saliency: Sequence[np.ndarray]) -> dict[str, float]:
    """The script's ``HL-`` brief metrics: per-clip predicted scores ``(c_pred,)`` against annotator
    scores ``(c, 3)`` of every clip."""
    out = {}
    for name, min_score in SALIENCY_LEVELS.items():
        hits = np.zeros(len(pred_saliency))
        ap = np.zeros((len(pred_saliency), 3))
        for q, (pred, truth) in enumerate(zip(pred_saliency, gt_saliency)):
            best = int(np.argmax(pred))  # over every predicted clip, as the script does
            hits[q] = best < len(truth) and bool((truth[best] >= min_score).any())
        lengths = np.array([len(t) for t in gt_saliency])
        for c in np.unique(lengths):  # videos of one length are scored together
            rows = np.flatnonzero(lengths == c)
            scores = np.stack([_fit(pred_saliency[q], int(c)) for q in rows])  # (n c)
            positive = np.stack([gt_saliency[q] >= min_score for q in rows]).astype(np.float64)  # (n c 3)
            ap[rows] = highlight_average_precision(scores, positive)
        out[f"HL-min-{name}-mAP"] = float(np.mean(ap))
        out[f"HL-min-{name}-Hit1"] = float(np.mean(hits))
    return out


def highlight_curve(score_map: np.ndarray, duration_s: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Saliency ``(c,)`` of every 2-second clip from a ``(t t)`` score map: the mean score of the
    valid cells whose span ``[i D/t, (j+1) D/t)`` holds the clip's midpoint (0 when none does).

    Valid cells are those of ``mask``, or the non-zero cells (a predictions file's convention).
    """
    score_map = np.asarray(score_map, dtype=F32)
    valid = score_map != 0 if mask is None else np.asarray(mask, dtype=bool)
    spans = cell_spans(score_map.shape[0], duration_s)  # (t t 2)
    midpoints = ((np.arange(int(duration_s / CLIP_LENGTH_S)) + 0.5) * CLIP_LENGTH_S).astype(F32)  # (c,)
    start_idx, end_idx = np.nonzero(valid)
    starts, ends = spans[start_idx, end_idx, 0], spans[start_idx, end_idx, 1]  # (k,)
    covers = (starts[None, :] <= midpoints[:, None]) & (midpoints[:, None] < ends[None, :])  # (c k)
    total = covers.astype(np.float64) @ score_map[start_idx, end_idx].astype(np.float64)  # (c,)
    return (total / np.maximum(covers.sum(axis=1), 1)).astype(F32)


# ---------------------------------------------------------------------------------------------
# Files


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _lines(path: Path, what: str):
    problem = path_problem(path)
    if problem:
        raise QVHighlightsError(f"{what} {path} {problem}; check the path")
    with open_regular_file(path, what=f"{what} {path}", max_bytes=MAX_DATA_FILE_BYTES) as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}, line {number}"
            try:
                text = raw.decode("utf-8")
                if not text.strip():
                    continue
                record = strict_json.loads(text)
            except (UnicodeDecodeError, ValueError):
                raise QVHighlightsError(f"{where}: not a JSON object; a {what} is JSON lines") from None
            if not isinstance(record, dict):
                raise QVHighlightsError(f"{where}: not a JSON object; a {what} is JSON lines")
            yield where, record


def _windows(value, where: str, key: str, width: int) -> np.ndarray:
    if not isinstance(value, list) or not all(isinstance(w, list) and len(w) == width and all(map(_number, w))
                                              for w in value):
        shape = "[start, end]" if width == 2 else "[start, end, score]"
        raise QVHighlightsError(f"{where}: '{key}' must be a list of {shape} lists of finite numbers")
    windows = np.asarray(value, dtype=np.float64).reshape(-1, width)
    if np.any(windows[:, 1] < windows[:, 0]) or (width == 2 and np.any(windows[:, 1] <= windows[:, 0])):
        raise QVHighlightsError(f"{where}: a window in '{key}' ends before it starts; each is [start, end, ...] in seconds")
    return windows


def read_ground_truth(path: str | Path) -> list[QueryTruth]:
    """Read a QVHighlights annotation file with ground truth (train or val; the test release has none)."""
    path = Path(path)
    truths, seen = [], set()
    for where, record in _lines(path, "QVHighlights annotation file"):
        missing = [key for key in ("qid", "vid", "query", "duration", "relevant_windows") if key not in record]
        if missing:
            no_truth = missing == ["relevant_windows"]
            hint = " (the test split's release holds no ground truth; score on val)" if no_truth else ""
            raise QVHighlightsError(f"{where}: no {', '.join(missing)}; a QVHighlights annotation line with ground "
                                    f"truth has qid, vid, query, duration and relevant_windows{hint}")
        qid, duration = record["qid"], record["duration"]
        if isinstance(qid, bool) or not isinstance(qid, int) or qid in seen:
            raise QVHighlightsError(f"{where}: 'qid' must be an integer not used on an earlier line, got {qid!r}")
        if not _number(duration) or duration < CLIP_LENGTH_S:
            raise QVHighlightsError(f"{where}: 'duration' must be a number of seconds >= {CLIP_LENGTH_S:g}, "
                                    f"got {duration!r}")
        windows = _windows(record["relevant_windows"], where, "relevant_windows", 2)
        if not len(windows):
            raise QVHighlightsError(f"{where}: 'relevant_windows' is empty; every scored query needs a window")
        saliency = None
        if "relevant_clip_ids" in record or "saliency_scores" in record:
            saliency = _saliency(record.get("relevant_clip_ids"), record.get("saliency_scores"), duration, where)
        seen.add(qid)
        truths.append(QueryTruth(qid, str(record["vid"]), str(record["query"]), float(duration), windows, saliency))
    if not truths:
        raise QVHighlightsError(f"QVHighlights annotation file {path} holds no queries")
    return truths


def _saliency(clip_ids, scores, duration: float, where: str) -> np.ndarray:
    """The script's ``mk_gt_scores``: annotator scores ``(c, 3)`` of every clip, 0 off the relevant ones."""
    num_clips = int(duration / CLIP_LENGTH_S)
    if (not isinstance(clip_ids, list) or not isinstance(scores, list) or len(clip_ids) != len(scores)
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_clips for i in clip_ids)
            or not all(isinstance(s, list) and len(s) == 3 and all(map(_number, s)) for s in scores)):
        raise QVHighlightsError(f"{where}: 'relevant_clip_ids' must be clip indices below {num_clips} and "
                                "'saliency_scores' one [a, b, c] list of scores per clip")
    full = np.zeros((num_clips, 3))
    full[np.asarray(clip_ids, dtype=np.int64)] = np.asarray(scores, dtype=np.float64).reshape(-1, 3)
    return full


def read_submission(path: str | Path) -> list[SubmissionEntry]:
    """Read a submission in QVHighlights' layout (the module docstring)."""
    path = Path(path)
    entries, seen = [], set()
    for where, record in _lines(path, "QVHighlights submission file"):
        if "qid" not in record or "pred_relevant_windows" not in record:
            raise QVHighlightsError(f"{where}: a submission line needs 'qid' and 'pred_relevant_windows'")
        qid = record["qid"]
        if isinstance(qid, bool) or not isinstance(qid, int) or qid in seen:
            raise QVHighlightsError(f"{where}: 'qid' must be an integer not used on an earlier line, got {qid!r}")
        windows = _windows(record["pred_relevant_windows"], where, "pred_relevant_windows", 3)
        saliency = record.get("pred_saliency_scores")
        if saliency is not None:
            if not isinstance(saliency, list) or not saliency or not all(map(_number, saliency)):
                raise QVHighlightsError(f"{where}: 'pred_saliency_scores' must be a non-empty list of finite numbers")
            saliency = np.asarray(saliency, dtype=np.float64)
        seen.add(qid)
        entries.append(SubmissionEntry(qid, str(record.get("query", "")), str(record.get("vid", "")), windows, saliency))
    if not entries:
        raise QVHighlightsError(f"QVHighlights submission file {path} holds no queries")
    return entries


def is_submission(path: str | Path) -> bool:
    """Whether the first line of ``path`` looks like a QVHighlights submission (``pred_relevant_windows``)."""
    try:
        for _, record in _lines(Path(path), "predictions file"):
            return "pred_relevant_windows" in record
    except QVHighlightsError:
        return False
    return False


def write_submission(path: str | Path, entries: Sequence[SubmissionEntry]) -> None:
    with atomic_path(path) as tmp, tmp.open("w") as handle:
        for entry in entries:
            handle.write(entry.to_json() + "\n")


# ---------------------------------------------------------------------------------------------
# Putting it together


def qvhighlights_metrics(entries: Sequence[SubmissionEntry], truths: Sequence[QueryTruth], *,
                         require_all: bool = True) -> dict[str, float]:
    """The script's brief metrics of a submission. Every submitted qid must be in ``truths``; with
    ``require_all`` (the script's ``match_number``) every query of ``truths`` must be submitted,
    otherwise the submitted ones are scored. Highlight metrics need every submitted query to have
    ``saliency`` and its truth annotator scores."""
    by_qid = {t.qid: t for t in truths}
    unknown = [e.qid for e in entries if e.qid not in by_qid]
    if unknown:
        raise QVHighlightsError(f"the submission has {len(unknown)} qid(s) not in the annotation file (e.g. "
                                f"{unknown[0]}); pass the annotation file of the split it was made on")
    if require_all and len(entries) < len(truths):
        missing = sorted(set(by_qid) - {e.qid for e in entries})
        raise QVHighlightsError(f"the submission lacks {len(missing)} of the annotation file's {len(truths)} queries "
                                f"(e.g. qid {missing[0]}); QVHighlights is scored on every query of the split")
    scored = [by_qid[e.qid] for e in entries]
    out = moment_retrieval_metrics([e.windows for e in entries], [t.windows_s for t in scored])
    if all(e.saliency is not None for e in entries) and all(t.saliency is not None for t in scored):
        out.update(highlight_metrics([e.saliency for e in entries], [t.saliency for t in scored]))
    out["qvhighlights_queries"] = len(entries)
    return out


def submission_from_predictions(predictions, truths: Sequence[QueryTruth], nms_thresh: float) -> list[SubmissionEntry]:
    """g2l predictions (``g2l.eval.predictions.Prediction``) in the submission layout: each query's
    qid found by video and query in ``truths``; windows ranked after NMS (from the score map when
    there is one, as re-scoring does, else the candidates as listed); saliency as predicted
    (``Prediction.saliency``), else the map's :func:`highlight_curve`, else none."""
    by_key = {(t.vid, t.query.strip()): t for t in truths}
    entries = []
    for p in predictions:
        truth = by_key.get((p.video, p.query.strip()))
        if truth is None:
            raise QVHighlightsError(f"query {p.query!r:.60} of video {p.video} is not in the QVHighlights annotation "
                                    "file; pass the annotation file of the split the predictions were made on")
        saliency = p.saliency
        if p.score_map is not None:
            spans, scores = ranked_candidates(p.score_map, p.duration, nms_thresh, MAX_PRED_WINDOWS)
            windows = np.concatenate([spans, scores[:, None]], axis=1)
            saliency = highlight_curve(p.score_map, p.duration) if saliency is None else saliency
        else:
            windows = np.asarray(p.candidates)[:, :3]
        entries.append(SubmissionEntry(truth.qid, truth.query, truth.vid, windows.astype(np.float64), saliency))
    return entries


def format_qvhighlights_table(metrics: dict[str, float]) -> str:
    """The QVHighlights figures in percent, as papers print them."""
    if "MR-full-mAP" not in metrics:
        return ""

    def pct(key: str) -> str:
        return f"{100 * metrics[key]:.2f}" if key in metrics else "-"

    scored, split = metrics.get("qvhighlights_queries", 0), metrics.get("qvhighlights_split_queries", 0)
    of_split = f" of the split's {split}" if split and split != scored else ""
    rows = [f"QVHighlights ({scored} queries{of_split}; Moment-DETR's standalone_eval):",
            f"  moments     mAP {pct('MR-full-mAP')}  mAP@0.5 {pct('MR-full-mAP@0.5')}  mAP@0.75 {pct('MR-full-mAP@0.75')}"
            f"  R1@0.5 {pct('MR-full-R1@0.5')}  R1@0.7 {pct('MR-full-R1@0.7')}",
            "              mAP by length: " + "  ".join(f"{name} {pct(f'MR-{name}-mAP')}" for name in LENGTH_RANGES)]
    if "HL-min-VeryGood-mAP" in metrics:
        rows.append("  highlights  " + "  ".join(f"{name}: mAP {pct(f'HL-min-{name}-mAP')} HIT@1 {pct(f'HL-min-{name}-Hit1')}"
                                                 for name in reversed(SALIENCY_LEVELS)))
    return "\n".join(rows)


def reads_qvhighlights(data_cfg, split: str | None = None) -> bool:
    """Whether the data config reads QVHighlights annotations: its ``annotation_format``, or when that
    is empty (guessed), the format of the first annotation file there is (``split``'s first)."""
    if data_cfg.annotation_format:
        return data_cfg.annotation_format == "qvhighlights"
    from g2l.data.annotations import guess_format

    names = [split] if split else []
    names += [data_cfg.eval_split, "train", "val", "test"]
    paths = [getattr(data_cfg, f"{name}_annotations", "") for name in names]
    path = next((p for p in paths if p and Path(p).is_file()), None)
    return path is not None and guess_format(path) == "qvhighlights"


def qvhighlights_annotations(data_cfg, split: str) -> Path | None:
    """The annotation file of ``split`` when the data config reads QVHighlights, else None."""
    path = getattr(data_cfg, f"{split}_annotations", "")
    return Path(path) if path and reads_qvhighlights(data_cfg, split) else None


def score_split(predictions, annotations: str | Path, nms_thresh: float, submission_path: str | Path) -> dict[str, float]:
    """Score g2l predictions of a QVHighlights split as the script does and write them as a
    submission; the queries the dataset kept are scored (``qvhighlights_split_queries`` says of how many)."""
    truths = read_ground_truth(annotations)
    entries = submission_from_predictions(predictions, truths, nms_thresh)
    write_submission(submission_path, entries)
    metrics = qvhighlights_metrics(entries, truths, require_all=False)
    metrics["qvhighlights_split_queries"] = len(truths)
    return metrics
