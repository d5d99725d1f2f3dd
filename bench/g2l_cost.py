"""What G2L's extra training signals cost, measured on this machine.

(a) Shapley Monte Carlo sampler (g2l/ops/shapley.py, the stratified estimator that L_SSI runs;
    bench/shapley_accuracy.py scores its accuracy): bracket evaluations per second of the Numba
    kernel on one thread and on all, and milliseconds per video, on the game of one video: S
    sentences and M = 2 K S moment players (Charades-STA: S = 3, K = 5 -> M = 30; ActivityNet-like:
    S = 4, K = 7 -> M = 56).
(b) Geodesic closeness (g2l/ops/geodesic.py): one TACoS-sized video, P = 2548 cells, d = 256,
    8 sources, single-threaded, on three kinds of features (see ``cell_features``).
(c) A whole training step of G2L against MMN for the three public configurations (random
    features of the public dimensions, a small text encoder; bench/common.py), each in its own
    process; on a CPU the map is narrow (``--hidden-dim``), on CUDA the paper's 512.
(d) kernels: one G2L loss computation (GroundingLoss forward: L_bce + L_v + L_GCL + L_SSI), and
    its geodesic part (closeness of every cell to each sentence's g_j) and Shapley part (the SSI
    estimator on the batch's games), with the Numba and the torch kernels, at the Charades-STA and
    ActivityNet batch shapes (48 videos, the real sentences per video, the bench model's map features);
    the figures that decide ``auto`` kernels on a CPU (g2l/losses/kernels.py; docs/benchmarks.md).

JIT compilation is excluded (every kernel is warmed up first); times are medians of repeats.

    python bench/g2l_cost.py            # full run: (a) and (b) about a minute, (c) about 6 minutes on a CPU
    python bench/g2l_cost.py --quick    # fewer repeats
    python bench/g2l_cost.py --quick --sections d       # (d) alone, about a minute on a CPU
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

from g2l.ops.geodesic import geodesic_closeness_batch
from g2l.ops.shapley import pairwise_interaction
from g2l.ops.spans import pooling_mask


def timed(fn, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def single_threaded():
    numba.set_num_threads(1)
    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# (a) Shapley sampler
# ---------------------------------------------------------------------------------------------


def shapley_game(num_sentences: int, num_moments: int, seed: int = 0) -> np.ndarray:
    """A plausible ``(s m)`` cosine-similarity matrix: moments near their sentence plus others."""
    rng = np.random.default_rng(seed)
    sentences = rng.standard_normal((num_sentences, 256))
    owner = rng.integers(0, num_sentences, size=num_moments)
    moments = sentences[owner] + 1.5 * rng.standard_normal((num_moments, 256))
    sentences /= np.linalg.norm(sentences, axis=1, keepdims=True)
    moments /= np.linalg.norm(moments, axis=1, keepdims=True)
    return sentences @ moments.T


def bench_shapley(games: dict[str, tuple[int, int]], samples: int, repeats: int) -> list[dict]:
    """Brackets/second of the stratified Numba estimator, on 1 thread and on all threads."""
    rows = []
    all_threads = numba.config.NUMBA_NUM_THREADS
    for name, (num_sentences, k_per_sentence) in games.items():
        num_moments = 2 * k_per_sentence * num_sentences
        sim = shapley_game(num_sentences, num_moments)
        pairs = num_sentences * num_moments
        pairwise_interaction(sim, 10)  # compile / load the cached kernel
        single_threaded()
        t_one = statistics.median(timed(lambda: pairwise_interaction(sim, samples, seed=1), repeats))
        numba.set_num_threads(all_threads)
        torch.set_num_threads(all_threads)  # kernels use at most torch's threads (g2l/ops/threads.py)
        t_all = statistics.median(timed(lambda: pairwise_interaction(sim, samples, seed=1), repeats))
        single_threaded()
        rows.append(dict(
            game=f"{name}: S={num_sentences}, M={num_moments}, n={num_sentences + num_moments}",
            rate=pairs * samples / t_one, parallel_rate=pairs * samples / t_all,
            video_ms=1e3 * t_one, samples=samples, threads=all_threads,
        ))
    return rows


def print_shapley(rows: list[dict]) -> None:
    print("\n(a) Shapley interaction, stratified Monte Carlo: bracket evaluations per second")
    print(f"{'game':<34} {'Numba 1 thr':>12} {'Numba all':>12} {'ms/video':>9}")
    for r in rows:
        print(f"{r['game']:<34} {r['rate']:>12,.0f} {r['parallel_rate']:>12,.0f} {r['video_ms']:>9.1f}")
    print(f"    ms/video: all S*M pairs at {rows[0]['samples']} samples each, 1 thread "
          f"('Numba all' = {rows[0]['threads']} threads).")


# ---------------------------------------------------------------------------------------------
# (b) Geodesic closeness
# ---------------------------------------------------------------------------------------------


def cell_features(kind: str, num_clips: int = 128, dim: int = 256, seed: int = 0) -> np.ndarray:
    """``(p d)`` features of the valid cells of a TACoS map (p = 2548 at 128 clips).

    gauss:  i.i.d. Gaussian (almost nothing within the cut-off but the sources);
    map-noisy / map-smooth: max-pool over [i, j] of a smooth random walk of clip features, with /
    without noise of 0.5; on map-smooth the cut-off reaches the whole map, like real map features
    after the 2D convolutions.
    """
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        return rng.standard_normal((2548, dim)).astype(np.float32)
    clips = np.zeros((num_clips, dim))  # a random walk: each clip 0.9 of the last plus fresh noise
    state = rng.standard_normal(dim)
    for t in range(num_clips):
        state = 0.9 * state + np.sqrt(1 - 0.9**2) * rng.standard_normal(dim)
        clips[t] = state
    start_idx, end_idx = np.nonzero(pooling_mask(num_clips, [15, 8, 8, 8]))  # TACoS's valid cells, row-major
    cells = np.stack([clips[i : j + 1].max(axis=0) for i, j in zip(start_idx, end_idx)])  # (p d)
    noise = {"map-noisy": 0.5, "map-smooth": 0.0}[kind]
    return (cells + noise * rng.standard_normal(cells.shape)).astype(np.float32)


def bench_geodesic(kinds: list[str], num_sources: int, repeats: int) -> list[dict]:
    """Median single-threaded time of ``geodesic_closeness_batch`` on one video (lazy Numba kNN, and
    the dense torch Gram-matrix path for comparison)."""
    single_threaded()
    rows = []
    for kind in kinds:
        features = cell_features(kind)
        sources = np.random.default_rng(1).choice(len(features), size=num_sources, replace=False)
        start = time.perf_counter()
        G = geodesic_closeness_batch(features[None], [sources], knn="lazy")  # warm-up (loads or compiles)
        first_s = time.perf_counter() - start
        lazy = timed(lambda: geodesic_closeness_batch(features[None], [sources], knn="lazy"), repeats)
        dense = timed(lambda: geodesic_closeness_batch(features[None], [sources], knn="dense"), max(1, repeats // 3))
        rows.append(dict(kind=kind, p=len(features), d=features.shape[1], lazy_ms=1e3 * statistics.median(lazy),
                         lazy_min_ms=1e3 * min(lazy), dense_ms=1e3 * statistics.median(dense),
                         reached=int((G > 0).any(axis=0).sum()), first_s=first_s))
    return rows


def print_geodesic(rows: list[dict], num_sources: int) -> None:
    print(f"\n(b) Geodesic closeness, one video, {num_sources} sources, k=5, cutoff=0.5, 1 thread")
    print(f"{'features':<12} {'P':>5} {'d':>4} {'cells reached':>14} {'lazy ms':>9} {'(min)':>7} {'dense ms':>9}")
    for r in rows:
        print(f"{r['kind']:<12} {r['p']:>5} {r['d']:>4} {r['reached']:>14} {r['lazy_ms']:>9.2f} "
              f"{r['lazy_min_ms']:>7.2f} {r['dense_ms']:>9.2f}")
    print("    lazy: Numba Dijkstra computing kNN rows on demand (default on CPU); dense: torch Gram"
          " matrix + top-k, then the same Dijkstra (default on CUDA). knn='auto' is lazy on a CPU."
          "\n    Target: lazy < 20 ms on map-smooth (every cell within the cut-off).")


# ---------------------------------------------------------------------------------------------
# (c) Training step: G2L against MMN
# ---------------------------------------------------------------------------------------------

def bench_training_step(configs: list[str], hidden_dim: int, device: str, steps: int, warmup: int, bf16: bool,
                        threads: int) -> list[dict]:
    """Seconds per training step (forward, loss, backward, clip, AdamW) of G2L (L_bce + L_v + L_GCL +
    L_SSI; SSI off on TACoS as in the authors' setting) and of MMN (L_bce + L_v + L_s) on the same
    random batch of the public configuration, each in a fresh process (bench/common.py)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import run_isolated

    rows = []
    for name in configs:
        common = dict(name=name, hidden_dim=hidden_dim, device=device, steps=steps, warmup=warmup, bf16=bf16,
                      threads=threads)
        mmn = run_isolated({**common, "variant": "mmn"})
        g2l = run_isolated({**common, "variant": "g2l"})
        rows.append({"config": name, "videos": mmn["videos"], "sentences": mmn["sentences"], "mmn_s": mmn["step_s"],
                     "g2l_s": g2l["step_s"], "ratio": g2l["step_s"] / mmn["step_s"],
                     "mmn_peak": mmn["peak_bytes"], "g2l_peak": g2l["peak_bytes"]})
    return rows


def print_training_step(rows: list[dict], hidden_dim: int, device: str) -> None:
    print(f"\n(c) training step, G2L vs MMN ({device}, map width {hidden_dim}; target G2L/MMN <= 1.3x, authors 2.6x)")
    print(f"{'config':<12} {'videos':>6} {'sents':>6} {'MMN s':>8} {'G2L s':>8} {'G2L/MMN':>8} {'MMN MiB':>8} {'G2L MiB':>8}")
    for r in rows:
        print(f"{r['config']:<12} {r['videos']:>6} {r['sentences']:>6} {r['mmn_s']:>8.3f} {r['g2l_s']:>8.3f} "
              f"{r['ratio']:>7.2f}x {r['mmn_peak'] / 2**20:>8.0f} {r['g2l_peak'] / 2**20:>8.0f}")


# ---------------------------------------------------------------------------------------------
# (d) kernels (the loss's kernels=, G2L_KERNELS): Numba against torch
# ---------------------------------------------------------------------------------------------


def bench_loss_kernels(configs: list[str], device: str, repeats: int, hidden_dim: int = 64,
                       videos: int | None = None) -> list[dict]:
    """Median seconds of the geodesic part, the Shapley part and the whole G2L loss forward, per
    kernel setting, on one random batch of each public configuration (the model's output is shared)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import PUBLIC, REPO, build_bench_model, random_batch

    from g2l.config import load_config
    from g2l.losses.combine import build_loss
    from g2l.losses.kernels import interaction_estimator
    from g2l.losses.positives import positive_cells
    from g2l.losses.ssi import moment_games
    from g2l.ops.geodesic import geodesic_closeness_rows

    dev = torch.device(device)

    def timed_on_device(fn) -> float:
        def call():
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        call()  # warm-up: JIT, caches, allocator
        return statistics.median(timed(call, repeats))

    rows = []
    for name in configs:
        config_file, num_videos, sentences = PUBLIC[name]
        base = ["loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4", f"model.hidden_dim={hidden_dim}"]
        cfg = load_config(REPO / config_file, base)
        torch.manual_seed(0)
        model = build_bench_model(cfg).to(dev)
        batch = random_batch(cfg, videos or num_videos, sentences).to(dev)
        with torch.no_grad():
            output = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
        lo = cfg.loss
        cells = output.cell_contrast.detach()  # (b C d)
        gt_cell = positive_cells(batch.iou_maps[:, model.cell_start_idx, model.cell_end_idx], 1)[:, 0]
        closeness = geodesic_closeness_rows(cells, batch.sentence_video, gt_cell, lo.geodesic_k, lo.geodesic_cutoff,
                                            kernels="torch")
        games = [g.detach() for g in moment_games(output.contrast_cos, batch.sentence_video, closeness, lo.ssi_num_players,
                                                  batch.num_videos, batch.sentence_mask.shape[1])]
        row = {"config": name, "videos": batch.num_videos, "sentences": int(batch.sentence_video.numel()),
               "cells": cells.shape[1], "players": sum(g.shape[1] for g in games),
               "reached": float((closeness > 0).float().sum(1).mean())}
        for kernels in ("numba", "torch"):
            row[f"geodesic_{kernels}"] = timed_on_device(lambda: geodesic_closeness_rows(
                cells, batch.sentence_video, gt_cell, lo.geodesic_k, lo.geodesic_cutoff, kernels=kernels))
            estimate = interaction_estimator(kernels)
            row[f"shapley_{kernels}"] = timed_on_device(lambda: estimate(
                [g if kernels == "torch" else g.float().cpu().numpy() for g in games], lo.ssi_num_samples, seed=1,
                tau=lo.tau, return_stderr=True))
            loss_fn = build_loss(cfg, kernels=kernels)
            row[f"loss_{kernels}"] = timed_on_device(lambda: loss_fn(output, batch, model.cell_start_idx,
                                                                     model.cell_end_idx, epoch=1))
        rows.append(row)
    return rows


def print_loss_kernels(rows: list[dict], device: str, threads: int) -> None:
    print(f"\n(d) kernels on {device} ({threads} thread(s)): seconds per call, numba vs torch (ratio torch/numba)")
    print(f"{'config':<12} {'videos':>6} {'sents':>5} {'cells':>5} {'reach':>6} {'players':>7}  "
          f"{'geodesic numba/torch':>22} {'ratio':>6}  {'Shapley numba/torch':>21} {'ratio':>6}  "
          f"{'G2L loss numba/torch':>22} {'ratio':>6}")
    for r in rows:
        parts = "".join(f"  {r[part + '_numba']:>10.4f} {r[part + '_torch']:>10.4f} {r[part + '_torch'] / r[part + '_numba']:>6.2f}x"
                        for part in ("geodesic", "shapley", "loss"))
        print(f"{r['config']:<12} {r['videos']:>6} {r['sentences']:>5} {r['cells']:>5} {r['reached']:>6.1f} "
              f"{r['players']:>7}{parts}")
    print("    reach: mean cells within the geodesic cut-off per sentence; players: moment players over the"
          " batch's games. A ratio above 1: Numba is faster.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    parser.add_argument("--shapley-samples", type=int, default=512, help="draws per pair (L_SSI's default)")
    parser.add_argument("--sources", type=int, default=8, help="geodesic sources per video")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--step-configs", default="charades,activitynet,tacos",
                        help="public configurations for (c); empty to skip")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden-dim", type=int, default=None, help="map width for (c) (default: 512 on CUDA, 64 on CPU)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--sections", default="abcd", help="which of (a) (b) (c) (d) to run, e.g. 'd'")
    parser.add_argument("--loss-configs", default="charades,activitynet", help="public configurations for (d)")
    parser.add_argument("--threads", type=int, default=1, help="torch and Numba threads for (d) (0: their default)")
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats

    print(f"numba {numba.__version__}, torch {torch.__version__}, numba threads available: "
          f"{numba.config.NUMBA_NUM_THREADS}")
    games = {"Charades K=5": (3, 5), "ActivityNet K=7": (4, 7)}
    if "a" in args.sections:
        print_shapley(bench_shapley(games, args.shapley_samples, repeats))
    if "b" in args.sections:
        print_geodesic(bench_geodesic(["gauss", "map-noisy", "map-smooth"], args.sources, repeats), args.sources)
    if "d" in args.sections:
        if args.threads:
            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
            torch.set_num_threads(args.threads)
        rows = bench_loss_kernels(args.loss_configs.split(","), args.device, max(3, repeats // 2))
        print_loss_kernels(rows, args.device, args.threads or torch.get_num_threads())
    if args.step_configs and "c" in args.sections:
        hidden = args.hidden_dim or (512 if args.device.startswith("cuda") else 64)
        rows = bench_training_step(args.step_configs.split(","), hidden, args.device, args.steps, 1, args.bf16, threads=1)
        print_training_step(rows, hidden, args.device)


if __name__ == "__main__":
    main()
