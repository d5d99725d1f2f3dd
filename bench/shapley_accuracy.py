"""How accurate the Shapley interaction estimates are that L_SSI learns from, against sample count.

For the two games of the public settings (Charades-STA: S = 3 sentences, K = 5 -> M = 30 moment
players; ActivityNet: S = 4, K = 7 -> M = 56) and a dense-captions game (S = 16, M = 120 after
de-duplication), on plausible similarity matrices (bench/g2l_cost.py
``shapley_game``, several seeds), each estimator (``stratified``, L_SSI's, in Numba and in batched
torch, and ``plain``, the former default: independent draws per pair) is run at several sample
counts (brackets per pair) and compared with a reference: the stratified estimator at 2^16 draws per
sentence (exact enumeration of 2^33 or more coalitions is out of reach; the reference's own
standard error is printed and is far below the spread of the index). The plain estimator left the
library (it is a test reference now); it is loaded from git at ``--plain-commit``, the last commit
whose g2l/ops/shapley.py had it, and skipped where git or that commit is not at hand.

Printed per game and estimator: the Pearson correlation of the estimates with the reference over
all (sentence, moment) pairs, the share of sentences whose top moment agrees with the reference's,
and milliseconds per video (one thread; a G2L training step runs one game per video).

    python bench/shapley_accuracy.py            # about two minutes on one core
    python bench/shapley_accuracy.py --quick    # fewer games and sample counts
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from g2l_cost import shapley_game  # noqa: E402
from ssi_epoch_cost import load_old  # noqa: E402

from g2l.ops import shapley_torch  # noqa: E402
from g2l.ops.shapley import pairwise_interaction  # noqa: E402

PLAIN_COMMIT = "e3d3d653f415c330c5a5a3f4f1b86d6461484801"  # g2l/ops/shapley.py with method="plain"
GAMES = {"charades": (3, 30), "activitynet": (4, 56), "dense-captions": (16, 120)}  # (s, m); dense: m de-duplicated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reference-samples", type=int, default=1 << 16)
    parser.add_argument("--kernel", choices=["numba", "torch", "both"], default="both",
                        help="the stratified estimator's kernel(s) to score (plain is always Numba)")
    parser.add_argument("--plain-commit", default=PLAIN_COMMIT,
                        help="git revision to load the plain estimator from (empty: leave it out)")
    args = parser.parse_args()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    counts = [64, 256, 512] if args.quick else [64, 128, 256, 512, 1024]
    game_seeds = range(2 if args.quick else 4)
    repeats = 2 if args.quick else 3
    pairwise_interaction(shapley_game(2, 4), 8)  # compile / load the cached kernels
    estimators = {}
    plain = load_old(args.plain_commit) if args.plain_commit else None
    if plain is not None:
        plain.pairwise_interaction(shapley_game(2, 4), 8, method="plain")  # compile
        estimators["plain"] = lambda sim, n, seed: plain.pairwise_interaction(sim, n, seed=seed, method="plain")
    elif args.plain_commit:
        print(f"plain estimator left out: git or commit {args.plain_commit} is not at hand")
    print(f"{'game':<34} {'estimator':<11} {'samples':>7} {'corr':>6} {'top-1':>6} {'ms/video':>9}")
    if args.kernel in ("numba", "both"):
        estimators["stratified"] = lambda sim, n, seed: pairwise_interaction(sim, n, seed=seed)
    if args.kernel in ("torch", "both"):
        estimators["strat-torch"] = lambda sim, n, seed: shapley_torch.pairwise_interaction_batch([sim], n, seed=seed)[0]
    for name, (num_sentences, num_moments) in GAMES.items():
        games = [shapley_game(num_sentences, num_moments, seed=g) for g in game_seeds]
        references, ref_errors, spreads = [], [], []
        for g, sim in enumerate(games):
            ref, err = pairwise_interaction(sim, args.reference_samples, seed=10_000 + g, return_stderr=True)
            references.append(ref)
            ref_errors.append(float(np.sqrt(np.mean(err ** 2))))
            spreads.append(float(ref.std()))
        label = f"{name}: S={num_sentences}, M={num_moments}"
        print(f"{label:<34} reference: {args.reference_samples} draws, rms standard error "
              f"{statistics.mean(ref_errors):.2e} against a spread (sd) of the index of {statistics.mean(spreads):.2e}")
        for method, estimate in estimators.items():
            for samples in counts:
                corrs, tops, times = [], [], []
                for ref, sim in zip(references, games):
                    for r in range(repeats):
                        start = time.perf_counter()
                        est = estimate(sim, samples, r)
                        times.append(time.perf_counter() - start)
                        corrs.append(float(np.corrcoef(est.ravel(), ref.ravel())[0, 1]))
                        tops.append(float(np.mean(est.argmax(1) == ref.argmax(1))))
                print(f"{'':<34} {method:<11} {samples:>7} {statistics.mean(corrs):6.3f} {statistics.mean(tops):6.2f} "
                      f"{1e3 * statistics.median(times):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
