"""Geodesic closeness (docs/method.md section 3): the Numba kernels against the torch kernels on one
training batch, to choose ``kernels=`` per device.

The batch is a public configuration's (bench/common.py: 48 videos, the mean sentences per video of
the train split, one source per sentence) with the valid cells of its sparse map (Charades-STA:
side 16, 136 cells; ActivityNet: side 64, 1104 cells) and ``d = 256`` features shaped like a moment
map's: the max-pool over [i, j] of a smooth random walk of clip features, plus noise (``--noise``;
0 puts most of the map within the cut-off, like real map features after the 2D convolutions, the
Numba lazy kernel's best case; 0.5 reaches few cells).

Columns, each the median over ``--repeats`` calls of ``geodesic_closeness_batch`` after a warm-up
(JIT compilation excluded), one batch per call:
    numba lazy:  the Numba Dijkstra computing kNN rows on demand (the CPU default, knn="auto")
    numba dense: torch Gram matrix + top-k on the device, then the Numba Dijkstra on the CPU
    torch:       kernels="torch", the same dense graph and a batched min-plus relaxation, all
                 on the device
and torch / numba lazy. On CUDA the times include a synchronisation after each call.

    python bench/geodesic_kernels.py                      # CPU, 1 thread, both configurations
    python bench/geodesic_kernels.py --device cuda        # on a GPU machine
    python bench/geodesic_kernels.py --configs charades --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PUBLIC, REPO  # noqa: E402  (common puts the repository on sys.path)

from g2l.config import load_config  # noqa: E402
from g2l.ops.geodesic import geodesic_closeness_batch  # noqa: E402
from g2l.ops.spans import pooling_mask  # noqa: E402

KERNELS = {"numba lazy": dict(knn="lazy", kernels="numba"), "numba dense": dict(knn="dense", kernels="numba"),
           "torch": dict(knn="dense", kernels="torch")}


def map_batch(num_videos: int, num_clips: int, pooling_counts: list[int], dim: int, noise: float,
              rng: np.random.Generator) -> np.ndarray:
    """``(b p d)`` float32 features of the valid cells of the sparse map, video by video."""
    start_idx, end_idx = np.nonzero(pooling_mask(num_clips, pooling_counts))  # (p,) each
    batch = []
    for _ in range(num_videos):
        clips = np.zeros((num_clips, dim))
        state = rng.standard_normal(dim)
        for t in range(num_clips):
            state = 0.9 * state + math.sqrt(1 - 0.81) * rng.standard_normal(dim)
            clips[t] = state
        prefix_max = [np.maximum.accumulate(clips[i:], axis=0) for i in range(num_clips)]  # [i] (t-i d)
        cells = np.stack([prefix_max[i][j - i] for i, j in zip(start_idx, end_idx)])  # (p d)
        batch.append(cells + noise * rng.standard_normal(cells.shape))
    return np.stack(batch).astype(np.float32)


def sources_of(num_videos: int, sentences_per_video: float, p: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Sentence counts alternating around the mean (as bench/common.py's random_batch), one source each."""
    low = math.floor(sentences_per_video)
    counts = [max(1, low + int(rng.random() < sentences_per_video - low)) for _ in range(num_videos)]
    return [rng.integers(0, p, size=count) for count in counts]


def timed_ms(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_config(name: str, device: torch.device, noise: float, repeats: int, k: int, cutoff: float) -> dict:
    config_file, num_videos, sentences = PUBLIC[name]
    cfg = load_config(REPO / config_file)
    rng = np.random.default_rng(0)
    features = map_batch(num_videos, cfg.model.num_clips, cfg.model.pooling_counts, cfg.model.joint_dim, noise, rng)
    sources = sources_of(num_videos, sentences, features.shape[1], rng)
    x = torch.from_numpy(features).to(device)
    row = dict(config=name, videos=num_videos, p=features.shape[1], d=features.shape[2],
               q=sum(len(s) for s in sources))
    results = {}
    for column, kwargs in KERNELS.items():
        call = lambda: geodesic_closeness_batch(x, sources, k=k, cutoff=cutoff, **kwargs)  # noqa: E731
        results[column] = call()  # warm-up: loads or compiles the Numba kernels
        row[column] = timed_ms(call, repeats, device)
    reference = results["numba dense"].cpu()
    row["reached"] = float((reference > 0).float().sum(dim=1).mean())
    row["torch = numba dense"] = bool(torch.equal(results["torch"].cpu(), reference))
    row["max |torch - numba lazy|"] = float((results["torch"].cpu() - results["numba lazy"].cpu()).abs().max())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", default="charades,activitynet", help="public configurations, comma-separated")
    parser.add_argument("--noise", type=float, default=0.0, help="noise added to the map features")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch and Numba threads")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--cutoff", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, numba {numba.__version__}, device {device}, {args.threads} thread(s), "
          f"k={args.k}, cutoff={args.cutoff}, noise={args.noise}, median of {args.repeats}")
    header = f"{'config':<12} {'videos':>6} {'q':>4} {'p':>5} {'reached':>8}"
    header += "".join(f" {column + ' ms':>15}" for column in KERNELS) + f" {'torch/lazy':>10} {'torch=dense':>11}"
    print(header)
    for name in args.configs.split(","):
        r = bench_config(name, device, args.noise, args.repeats, args.k, args.cutoff)
        line = f"{r['config']:<12} {r['videos']:>6} {r['q']:>4} {r['p']:>5} {r['reached']:>8.1f}"
        line += "".join(f" {r[column]:>15.1f}" for column in KERNELS)
        line += f" {r['torch'] / r['numba lazy']:>9.2f}x {str(r['torch = numba dense']):>11}"
        print(line)
        print(f"{'':<12} max |torch - numba lazy| = {r['max |torch - numba lazy|']:.1e} (float round-off of the "
              "similarities; a near-tie can swap a neighbour)")
    print("reached: cells within the cut-off per source. torch/lazy < 1: the torch kernels are faster.")


if __name__ == "__main__":
    main()
