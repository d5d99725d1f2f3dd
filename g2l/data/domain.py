"""Is a video like the training videos? A compact summary of the training split's frame features,
stored with the model, and a video's distance from it.

What is summarised: every training video's pre-clip features as the model reads them (rows
L2-normalised, resampled to ``P`` rows: ``(P, F)``, g2l/data/features.py), all rows together, ``x (F)``.

The summary (``payload["domain"]``, g2l/io/checkpoint.py; ``domain.json`` of an exported folder)::

    mean       mu (F)          float16: the mean row
    basis      B (k F)         float16: the k = min(NUM_COMPONENTS, F - 1) leading principal directions
    variances  lambda (k)      float32: the variance along each of them
    residual_variance  s2      the mean variance per dimension outside them, (tr C - sum lambda) / (F - k)
    threshold                  a video is "outside" when its distance exceeds this:
                               QUANTILE of the training videos' distances times MARGIN
    quantiles  {"0.5": .., "0.9": .., "0.99": .., "1.0": ..}: the training videos' distance distribution
    num_videos, num_rows, statistic, version

A row's squared distance is a Mahalanobis distance under a probabilistic-PCA model of the rows,
per dimension (so that the training rows average exactly 1):

    d2(x) = ( sum_i (b_i . (x - mu))^2 / lambda_i  +  ||r||^2 / s2 ) / F,   r = (x - mu) - B^T B (x - mu)

and a video's distance is ``sqrt(mean of d2 over its P rows)``: about 1 for a video like the
training ones, far above 1 for one whose frames look like nothing the model saw (rendered shapes
against real photographs: README, *Videos unlike the training videos*). Size: ``(k + 1) F`` float16 numbers,
12.8 kB for the demo's 1280-wide MobileNetV2 features, 5 kB for 512-wide CLIP ones.

The fit streams over the videos twice (sums of ``x`` and ``x x^T`` in float64, then the
distances), so it holds one ``(F F)`` matrix, never the whole split.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import torch

NUM_COMPONENTS = 4
QUANTILE = 0.99
MARGIN = 1.25
STATISTIC = "ppca-mahalanobis-per-dim"
VERSION = 1
_QUANTILES = (0.5, 0.9, 0.99, 1.0)
_MAX_WIDTH = 1 << 16
_KEYS = {"version", "statistic", "mean", "basis", "variances", "residual_variance", "threshold", "quantile",
         "margin", "quantiles", "num_videos", "num_rows"}


def fit_domain_summary(videos: Callable[[], Iterable[np.ndarray]], *, num_components: int = NUM_COMPONENTS,
                       quantile: float = QUANTILE, margin: float = MARGIN) -> dict:
    """The summary of ``videos``: a callable returning a fresh iterable of ``(P, F)`` arrays (it is
    walked twice), each one video's pre-clip features. Raises ``ValueError`` for fewer than two rows."""
    rows_sum, outer, num_rows, num_videos, width = None, None, 0, 0, None
    for features in videos():
        x = np.asarray(features, dtype=np.float64)  # (P F)
        if rows_sum is None:
            width = x.shape[1]
            rows_sum, outer = np.zeros(width), np.zeros((width, width))
        rows_sum += x.sum(axis=0)
        outer += x.T @ x
        num_rows += x.shape[0]
        num_videos += 1
    if num_rows < 2:
        raise ValueError("a domain summary needs at least two feature rows")
    mean = rows_sum / num_rows
    covariance = outer / num_rows - np.outer(mean, mean)  # (F F)
    values, vectors = np.linalg.eigh(covariance)  # ascending
    k = max(1, min(num_components, width - 1))
    top = np.argsort(values)[::-1][:k]
    tiny = 1e-12
    summary = {
        "version": VERSION,
        "statistic": STATISTIC,
        "mean": torch.from_numpy(mean.astype(np.float16)),
        "basis": torch.from_numpy(np.ascontiguousarray(vectors[:, top].T).astype(np.float16)),  # (k F)
        "variances": torch.from_numpy(np.maximum(values[top], tiny).astype(np.float32)),
        "residual_variance": float(max((np.trace(covariance) - values[top].sum()) / max(width - k, 1), tiny)),
    }
    distances = np.array([video_distance(summary, features) for features in videos()])
    qs = np.quantile(distances, _QUANTILES)
    summary.update(threshold=float(np.quantile(distances, quantile) * margin), quantile=float(quantile),
                   margin=float(margin), quantiles={f"{q:g}": float(v) for q, v in zip(_QUANTILES, qs)},
                   num_videos=int(num_videos), num_rows=int(num_rows))
    return summary


def fit_dataset_summary(dataset) -> dict:
    """The summary of a ``GroundingDataset``'s videos (g2l/data/dataset.py), as the model read them."""
    return fit_domain_summary(lambda: (dataset.features.load(video_id) for video_id, _ in dataset.videos))


def row_distances(summary: dict, features: np.ndarray) -> np.ndarray:
    """``d2`` of each row of ``features (T, F)`` (already L2-normalised and resampled): ``(T,)`` float64."""
    x = np.asarray(features, dtype=np.float64)
    mean = summary["mean"].double().numpy()  # (F)
    basis = summary["basis"].double().numpy()  # (k F), rows orthonormal up to float16 rounding
    centred = x - mean  # (T F)
    z = centred @ basis.T  # (T k)
    residual = centred - z @ basis  # (T F)
    inside = (z ** 2 / summary["variances"].double().numpy()).sum(axis=1)
    outside = (residual ** 2).sum(axis=1) / summary["residual_variance"]
    return (inside + outside) / x.shape[1]


def video_distance(summary: dict, features: np.ndarray) -> float:
    """A video's distance from the training videos: ``sqrt(mean d2)`` over its rows."""
    return float(math.sqrt(row_distances(summary, features).mean()))


def domain_verdict(summary: dict, features: np.ndarray) -> dict:
    """``{"distance", "threshold", "outside"}`` of a video's ``(P, F)`` pre-clip features."""
    distance = video_distance(summary, features)
    threshold = float(summary["threshold"])
    return {"distance": distance, "threshold": threshold, "outside": bool(distance > threshold)}


def domain_warning(name: str, verdict: dict) -> str:
    """The one warning line for a video outside the model's domain."""
    return (f"{name} looks unlike the videos this model was trained on (feature distance {verdict['distance']:.2f}, "
            f"above {verdict['threshold']:.2f}): its answers may be meaningless")


def summary_problem(summary, feature_dim=None) -> str:
    """What is wrong with a stored summary (e.g. "its basis is not (k, F)"), or "" when nothing is."""
    if not isinstance(summary, dict) or not set(summary) <= _KEYS or not _KEYS - {"quantiles"} <= set(summary):
        return "it is not a mapping of the summary's fields"
    mean, basis, variances = summary["mean"], summary["basis"], summary["variances"]
    if summary["version"] != VERSION or summary["statistic"] != STATISTIC:
        return f"its version or statistic is not {VERSION} / {STATISTIC}"
    if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in (mean, basis, variances)):
        return "mean, basis and variances are not all float tensors"
    width = mean.shape[0] if mean.dim() == 1 else -1
    if not (0 < width <= _MAX_WIDTH and basis.dim() == 2 and 1 <= basis.shape[0] <= 64 and basis.shape[1] == width
            and variances.shape == (basis.shape[0],)):
        return "its mean is not (F,), its basis (k, F) or its variances (k,)"
    if feature_dim is not None and width != feature_dim:
        return f"it describes features of width {width}, the model reads {feature_dim}"
    if not all(bool(torch.isfinite(t).all()) for t in (mean, basis, variances)) or not bool((variances > 0).all()):
        return "it holds values that are not finite, or variances that are not positive"
    for key in ("residual_variance", "threshold", "quantile", "margin"):
        if not (_real(summary[key]) and summary[key] > 0):
            return f"its {key} is not a positive number"
    if not all(isinstance(summary[key], int) and not isinstance(summary[key], bool) and summary[key] >= 0
               for key in ("num_videos", "num_rows")):
        return "its counts are not whole numbers"
    quantiles = summary.get("quantiles", {})
    if not (isinstance(quantiles, dict) and len(quantiles) <= 16
            and all(isinstance(k, str) and len(k) <= 16 and _real(v) for k, v in quantiles.items())):
        return "its quantiles are not a few named numbers"
    return ""


def summary_to_json(summary: dict) -> dict:
    """The summary as plain JSON values (tensors as lists; 5 significant digits give float16 back exactly)."""
    def values(tensor):
        return [float(f"{v:.5g}") for v in tensor.float().flatten().tolist()]

    return {**summary, "mean": values(summary["mean"]),
            "basis": [values(row) for row in summary["basis"]], "variances": summary["variances"].tolist()}


def summary_from_json(data):
    """``summary_to_json`` undone; anything malformed is returned as is, for ``summary_problem`` to name."""
    try:
        return {**data, "mean": torch.tensor(data["mean"], dtype=torch.float16),
                "basis": torch.tensor(data["basis"], dtype=torch.float16),
                "variances": torch.tensor(data["variances"], dtype=torch.float32)}
    except (TypeError, KeyError, ValueError, RuntimeError):
        return data


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
