"""The stratified Shapley interaction estimator of L_SSI (docs/method.md section 3): the Numba kernel
(g2l/ops/shapley.py) against its batched torch twin (g2l/ops/shapley_torch.py), on one CPU thread.

Games are plausible similarity matrices (bench/g2l_cost.py ``shapley_game``) at 512 draws per
sentence: single games of 3x30 (Charades-STA), 4x56 (ActivityNet), 16x56, 16x120 and 27x120
(dense captions) sentences x moments, and one whole batch of 48 games of ActivityNet shapes
(sentences drawn from 2-8, m = 2 * 5 * s capped at 120), all in one call of each kernel.

Columns, each the median over ``--repeats`` calls after a warm-up (JIT compilation excluded):
    numba:     pairwise_interaction_batch(..., method="stratified") of g2l.ops.shapley
    torch:     g2l.ops.shapley_torch.pairwise_interaction_batch (default chunking for the device)
    torch old: with ``--baseline REV``, the torch module as of git revision REV, loaded from git
               into a temporary module (e.g. ``--baseline 8f30190`` for the padded kernel)
and torch / numba. On CUDA (``--device cuda``) torch times include a synchronisation after each
call and Numba stays on the CPU.

    python bench/shapley_kernels.py
    python bench/shapley_kernels.py --baseline 8f30190 --repeats 3
    python bench/shapley_kernels.py --device cuda --threads 16
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO  # noqa: E402  (common puts the repository on sys.path)
from g2l_cost import shapley_game  # noqa: E402

from g2l.ops import shapley_torch  # noqa: E402
from g2l.ops.shapley import pairwise_interaction_batch as numba_batch  # noqa: E402

SINGLE = [(3, 30), (4, 56), (16, 56), (16, 120), (27, 120)]


def activitynet_batch(num_games: int, seed: int) -> list[np.ndarray]:
    """``num_games`` games of ActivityNet shapes: s from 2-8, m = 2 * 5 * s capped at 120."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 9, size=num_games)
    return [shapley_game(int(s), min(10 * int(s), 120), seed=g) for g, s in enumerate(sizes)]


def load_revision(revision: str):
    """g2l/ops/shapley_torch.py as of ``revision``, as a module."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:g2l/ops/shapley_torch.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "shapley_torch_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("shapley_torch_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed_ms(call, repeats: int, device: torch.device) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", default=None, help="git revision of the torch module to compare with")
    parser.add_argument("--games", type=int, default=48, help="games in the whole-batch case")
    parser.add_argument("--baseline-max-pairs", type=int, default=900, metavar="N",
                        help="run the (slow) baseline only on cases of at most N (sentence, moment) pairs")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    baseline = load_revision(args.baseline) if args.baseline else None
    cases = [(f"{s}x{m}", [shapley_game(s, m)]) for s, m in SINGLE]
    cases.append((f"batch {args.games} ActivityNet", activitynet_batch(args.games, seed=0)))
    print(f"{args.samples} draws per sentence, {args.threads} thread(s), torch on {device}")
    header = f"{'game':<24} {'numba ms':>9} {'torch ms':>9} {'torch/numba':>11}"
    print(header + (f" {'old ms':>9} {'old/numba':>9}" if baseline else ""))
    for name, sims in cases:
        tensors = [torch.as_tensor(sim, device=device) for sim in sims]
        numba_ms = timed_ms(lambda: numba_batch(sims, args.samples, seed=1), args.repeats, torch.device("cpu"))
        torch_ms = timed_ms(lambda: shapley_torch.pairwise_interaction_batch(tensors, args.samples, seed=1),
                            args.repeats, device)
        line = f"{name:<24} {numba_ms:9.1f} {torch_ms:9.1f} {torch_ms / numba_ms:11.2f}"
        if baseline and sum(sim.size for sim in sims) <= args.baseline_max_pairs:
            old_ms = timed_ms(lambda: baseline.pairwise_interaction_batch(tensors, args.samples, seed=1), 1, device)
            line += f" {old_ms:9.1f} {old_ms / numba_ms:9.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
