"""What L_SSI's Shapley estimation costs per training epoch, on the real sentence counts.

Every training video is one game (g2l/losses/ssi.py): its s sentences and m = 2 K s moment players
(de-duplication not modelled: an upper bound, capped at the map's cells). The sentence counts per
video are read from the public training annotations under ``../shared/data/annotations``
(Charades-STA 2D-TAN txt, ActivityNet Captions and TACoS 2D-TAN json); K, the map size and the
batch size come from ``configs/charades.yaml``, ``activitynet.yaml``, ``tacos.yaml`` (TACoS runs
L_SSI off in the authors' setting; its cost is what switching it on would cost).

Per sentence count, one game is timed (``--samples`` draws, one thread) for the new estimator
(``method="stratified"``, polynomial in s) and, where feasible, the former one (exact strata over
which sentences are present, 2^(s-1) of them; loaded from git at ``--old-commit``). Counts above
``--max-timed-s`` (new) / ``--max-old-s`` (old) are extrapolated: new by a power law in s fitted
on the largest timed games (log-log; TACoS, whose videos all have over 60 sentences, is
extrapolated from the Charades and ActivityNet timings), old by its exponential law (time doubles per
sentence, fitted on the last timed counts). Extrapolated figures are marked ``~``.

    PYTHONPATH=. python bench/ssi_epoch_cost.py            # a few minutes on one core
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from g2l_cost import shapley_game  # noqa: E402

from g2l.ops.shapley import pairwise_interaction  # noqa: E402

ANNOTATIONS = ROOT.parent / "shared" / "data" / "annotations"
SPLITS = {
    "charades": ("charades_sta/2dtan/charades_sta_train.txt", "configs/charades.yaml"),
    "activitynet": ("activitynet_captions/2dtan/train.json", "configs/activitynet.yaml"),
    "tacos": ("tacos/2dtan/train.json", "configs/tacos.yaml"),
}


def sentence_counts(path: Path) -> collections.Counter:
    """Number of videos per sentence count of a training split."""
    if path.suffix == ".txt":
        per_video = collections.Counter(line.split()[0] for line in path.read_text().splitlines() if "##" in line)
        return collections.Counter(per_video.values())
    return collections.Counter(len(video["sentences"]) for video in json.loads(path.read_text()).values())


def config_numbers(path: Path) -> tuple[int, int, int]:
    """(K, valid map cells (upper bound: the upper triangle), batch size) of a dataset config."""
    cfg = yaml.safe_load(path.read_text())
    k = cfg.get("loss", {}).get("ssi_num_players", 5)  # g2l/config/schema.py's default
    clips = cfg["model"]["num_clips"]
    return k, clips * (clips + 1) // 2, cfg["train"]["batch_size"]


def load_old(commit: str):
    """The former estimator's module from git (None when git or the commit is not at hand)."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:g2l/ops/shapley.py"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "shapley_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("shapley_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["shapley_old"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def time_game(fn, num_sentences: int, num_moments: int, samples: int) -> float:
    sim = shapley_game(num_sentences, num_moments, seed=num_sentences)
    start = time.perf_counter()
    fn(sim, samples)
    return time.perf_counter() - start


def fit_power(xs, ys):
    slope, intercept = np.polyfit(np.log(xs), np.log(ys), 1)
    return lambda s: float(np.exp(intercept) * s ** slope)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--max-timed-s", type=int, default=27, help="new estimator: time up to this many sentences")
    parser.add_argument("--max-old-s", type=int, default=10, help="old estimator: time up to this many sentences")
    parser.add_argument("--old-commit", default="a0f6492")
    args = parser.parse_args()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    old = load_old(args.old_commit)
    new_fn = lambda sim, n: pairwise_interaction(sim, n)  # noqa: E731
    old_fn = (lambda sim, n: old.pairwise_interaction(sim, n)) if old else None  # noqa: E731
    new_fn(shapley_game(2, 4), 8)
    if old_fn:
        old_fn(shapley_game(2, 4), 8)
    print(f"SSI Shapley estimation per epoch, {args.samples} draws per sentence, one thread (sum over training videos)")
    print(f"{'split':<12} {'videos':>7} {'s max':>6} {'steps':>6} {'new s/epoch':>12} {'old s/epoch':>14} {'new ms/step':>12}")
    fitted = {}  # s -> seconds / m^2 of the timed games, over the splits so far
    for name, (annotation, config) in SPLITS.items():
        path = ANNOTATIONS / annotation
        if not path.is_file():
            print(f"{name:<12} annotations not found at {path}")
            continue
        counts = sentence_counts(path)
        k, cells, batch = config_numbers(ROOT / config)
        moments = {s: min(2 * k * s, cells) for s in counts}
        timed_new, timed_old = {}, {}
        for s in sorted(counts):
            if s <= args.max_timed_s:
                timed_new[s] = time_game(new_fn, s, moments[s], args.samples)
            if old_fn and s <= args.max_old_s:
                timed_old[s] = time_game(old_fn, s, moments[s], args.samples)
        for s, seconds in timed_new.items():
            fitted[s] = seconds / moments[s] ** 2
        xs = sorted(fitted)[-6:]  # the largest timed games of this and the earlier splits
        power = fit_power(xs, [fitted[s] for s in xs])
        new_total, new_extrapolated = 0.0, False
        for s, videos in counts.items():
            if s in timed_new:
                new_total += videos * timed_new[s]
            else:  # in s by the fit, in m as m^2 (moments served per draw x bracket size)
                new_total += videos * power(s) * moments[s] ** 2
                new_extrapolated = True
        old_total, old_text = 0.0, "n/a"
        if timed_old:
            last = sorted(timed_old)[-3:]
            per_mask = np.mean([timed_old[s] / 2 ** (s - 1) / moments[s] for s in last])
            for s, videos in counts.items():
                old_total += videos * (timed_old[s] if s in timed_old else per_mask * 2 ** (s - 1) * moments[s])
            old_text = ("~" if max(counts) > args.max_old_s else "") + f"{old_total:.3g}"
        num_videos = sum(counts.values())
        steps = -(-num_videos // batch)
        new_text = ("~" if new_extrapolated else "") + f"{new_total:.1f}"
        print(f"{name:<12} {num_videos:>7} {max(counts):>6} {steps:>6} {new_text:>12} {old_text:>14} "
              f"{1e3 * new_total / steps:>12.1f}")
    print("~ extrapolated (see the docstring); times under whatever load the machine had; a step runs its games in "
          "parallel over sentences, so wall time per step divides by the threads.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
