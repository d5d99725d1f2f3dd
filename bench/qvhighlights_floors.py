"""QVHighlights' highlight metrics (HL mAP and HIT@1, as Moment-DETR's standalone_eval computes
them) of trivial saliency baselines on the val annotations: the floors a highlight curve must beat.

Rows:

* uniform: every clip scores the same (HIT@1 takes clip 0; AP is the share of positive clips);
* random: independent normal scores per clip, mean and standard deviation over seeds;
* centre: a score that falls off with the distance to the video's middle (a position prior);
* g2l's highlight curve (g2l/eval/qvhighlights.py: each clip takes the mean score of the map cells
  that cover it) read off an *oracle* map whose cell scores are their IoU with the best
  ground-truth window (a dense map of one cell per 2-second clip), plain and with noise (normal,
  sd 0.15): what the derivation gives when the moment map is (nearly) perfect, against the same
  maps read by the max of the covering cells' scores (the rule not taken), and the ground-truth
  windows themselves (1 inside, 0 outside).

No model is run; only the annotations are read.

    python bench/qvhighlights_floors.py                   # ../shared/data/annotations/qvhighlights/
    python bench/qvhighlights_floors.py --annotations PATH --seeds 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2l.eval.qvhighlights import (  # noqa: E402
    CLIP_LENGTH_S,
    SALIENCY_LEVELS,
    highlight_curve,
    highlight_metrics,
    read_ground_truth,
)
from g2l.ops.spans import cell_spans, span_iou  # noqa: E402

DEFAULT = REPO.parent / "shared" / "data" / "annotations" / "qvhighlights" / "highlight_val_release.jsonl"


def oracle_map(windows_s: np.ndarray, duration_s: float) -> np.ndarray:
    """``(t t)`` IoU of every cell with its best ground-truth window, one cell per 2-second clip, 0 below the diagonal."""
    t = int(duration_s / CLIP_LENGTH_S)
    spans = cell_spans(t, t * CLIP_LENGTH_S)  # (t t 2)
    iou = np.max([span_iou(spans, w) for w in windows_s], axis=0)
    return np.triu(np.maximum(iou, 1e-6)).astype(np.float32)  # every upper cell valid (non-zero)


def max_rule_curve(score_map: np.ndarray, duration_s: float) -> np.ndarray:
    """The alternative reading: the highest score of the valid cells covering each clip's midpoint."""
    valid = score_map != 0
    spans = cell_spans(score_map.shape[0], duration_s)
    start_idx, end_idx = np.nonzero(valid)
    mid = (np.arange(int(duration_s / CLIP_LENGTH_S)) + 0.5) * CLIP_LENGTH_S
    covers = (spans[start_idx, end_idx, 0][None] <= mid[:, None]) & (mid[:, None] < spans[start_idx, end_idx, 1][None])
    return np.where(covers, score_map[start_idx, end_idx][None], 0).max(1)


def row(name: str, metrics: dict, spread: dict | None = None) -> str:
    cells = []
    for level in reversed(SALIENCY_LEVELS):
        for kind in ("mAP", "Hit1"):
            key = f"HL-min-{level}-{kind}"
            cell = f"{100 * metrics[key]:6.2f}"
            cells.append(cell + (f" ±{100 * spread[key]:.2f}" if spread else "      "))
    return f"{name:<40}" + "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=DEFAULT)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    truths = read_ground_truth(args.annotations)
    truths = [t for t in truths if t.saliency is not None]
    gt = [t.saliency for t in truths]
    clips = [len(s) for s in gt]
    print(f"{args.annotations}: {len(truths)} queries with saliency")
    print(" " * 40 + "  ".join(f"{level[:8] + ' ' + kind:<12}" for level in reversed(SALIENCY_LEVELS)
                               for kind in ("mAP", "HIT@1")))
    print(row("uniform", highlight_metrics([np.zeros(c) for c in clips], gt)))
    runs = [highlight_metrics([np.random.default_rng(seed).normal(size=c) for c in clips], gt) for seed in range(args.seeds)]
    mean = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    sd = {k: statistics.pstdev(r[k] for r in runs) for k in runs[0]}
    print(row(f"random ({args.seeds} seeds, ±sd)", mean, sd))
    print(row("centre prior", highlight_metrics([-np.abs(np.arange(c) + 0.5 - c / 2) for c in clips], gt)))
    maps = [oracle_map(t.windows_s, t.duration_s) for t in truths]
    rng = np.random.default_rng(0)
    noisy = [np.where(m > 0, np.clip(m + rng.normal(scale=0.15, size=m.shape), 1e-6, None), 0).astype(np.float32)
             for m in maps]
    for name, chosen in (("oracle map", maps), ("noisy oracle map", noisy)):
        print(row(f"{name}, g2l curve (mean)", highlight_metrics(
            [highlight_curve(m, len(m) * CLIP_LENGTH_S) for m in chosen], gt)))
        print(row(f"{name}, max of covering cells", highlight_metrics(
            [max_rule_curve(m, len(m) * CLIP_LENGTH_S) for m in chosen], gt)))
    inside = []
    for t, c in zip(truths, clips):
        mid = (np.arange(c) + 0.5) * CLIP_LENGTH_S
        inside.append(((t.windows_s[:, 0][None] <= mid[:, None]) & (mid[:, None] < t.windows_s[:, 1][None])).any(1) * 1.0)
    print(row("ground-truth windows (1 in, 0 out)", highlight_metrics(inside, gt)))


if __name__ == "__main__":
    main()
