"""Time per training step (forward, loss, backward, clip, AdamW), side by side for the map paths
and precisions, for the three public configurations: Charades-STA (N=16, 48 videos), ActivityNet
(N=64, 48 videos) and TACoS (N=128, 8 videos), on random features of the public dimensions with a
small random text encoder (4-layer, 256-d BERT) and the real mean number of sentences per video.

Columns (each in its own process, so its peak memory is its own):
    fp32 full      the baseline: float32, every map layer on its whole padded grid (bench/common.py's
                   ``map_compute="full"``, the computation the model's cropped map replaced)
    fp32 cropped   float32, the model's map (only the cells that reach a proposal; the same results)
    bf16 full      bf16 autocast, whole grid
    bf16 cropped   bf16 autocast, the model's map (what train.precision=auto gives on a bf16 machine)
and the speed-up of each over fp32 full, and the first step's total loss of each (equal losses
show the paths compute the same thing; bf16 differs by its round-off).

    python bench/train_step.py --quick                        # both widths, few videos per step: minutes
    python bench/train_step.py --hidden-dim 512 --rounds 3    # the paper width, full batches (slow on a CPU)
    python bench/train_step.py --device cuda                  # on a GPU

Rounds alternate the columns (fp32 full, fp32 cropped, ...; again), and each cell is the median
over rounds of a per-process median step time, so a load that drifts during the run touches
every column alike.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PUBLIC, default_device, run_isolated  # noqa: E402

from g2l.io.atomic import write_text_atomic  # noqa: E402

COLUMNS = [("fp32", "full"), ("fp32", "cropped"), ("bf16", "full"), ("bf16", "cropped")]
QUICK_VIDEOS = {"charades": 8, "activitynet": 2, "tacos": 1}  # --quick: videos per step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--hidden-dim", default=None, help="map width(s) H, comma-separated (default: 512,64)")
    parser.add_argument("--configs", default="charades,activitynet,tacos")
    parser.add_argument("--variant", default="mmn", choices=["mmn", "g2l"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds over the columns")
    parser.add_argument("--videos", type=int, default=None, help="videos per step (default: the public batch)")
    parser.add_argument("--quick", action="store_true",
                        help=f"few videos per step ({QUICK_VIDEOS}), 1 timed step: minutes, not hours, on a CPU")
    parser.add_argument("--columns", default=",".join(f"{p}-{m}" for p, m in COLUMNS),
                        help="which of fp32-full,fp32-cropped,bf16-full,bf16-cropped to run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--kernels", default="auto", choices=["auto", "numba", "torch"], help="the loss's kernels= (g2l/losses/kernels.py)")
    parser.add_argument("--json", default=None, help="write every cell (config, width, column, seconds) here")
    args = parser.parse_args()
    widths = [int(w) for w in (args.hidden_dim or "512,64").split(",")]
    columns = [tuple(c.split("-")) for c in args.columns.split(",")]
    if any(c not in COLUMNS for c in columns):
        parser.error(f"--columns takes {', '.join(f'{p}-{m}' for p, m in COLUMNS)}")
    steps = 1 if args.quick else args.steps
    for name in args.configs.split(","):
        if name not in PUBLIC:
            parser.error(f"unknown config '{name}'; choose from {', '.join(PUBLIC)}")
    print(f"device {args.device}, variant {args.variant}, kernels {args.kernels}, threads {args.threads}, "
          f"steps {steps} (+{args.warmup} warm-up), "
          f"rounds {args.rounds}" + (", --quick: few videos per step" if args.quick else ""))
    cells_out = []
    head = "".join(f"{p + ' ' + m:>14}" for p, m in columns)
    print(f"{'config':<12} {'H':>4} {'N':>4} {'videos':>6}{head}   speed-up vs fp32 full; first-step loss")
    for hidden in widths:
        for name in args.configs.split(","):
            videos = args.videos or (QUICK_VIDEOS[name] if args.quick else None)
            times = {c: [] for c in columns}
            results = {}
            for _ in range(args.rounds):
                for precision, compute in columns:
                    r = run_isolated(dict(name=name, variant=args.variant, hidden_dim=hidden, device=args.device,
                                          steps=steps, warmup=args.warmup, bf16=precision == "bf16", videos=videos,
                                          threads=args.threads, map_compute=compute, kernels=args.kernels))
                    times[(precision, compute)].append(r["step_s"])
                    results[(precision, compute)] = r
                    if args.json:  # after every cell: a run cut short still leaves what it measured
                        partial = [{**results[c], "column": f"{c[0]}-{c[1]}", "step_s": statistics.median(times[c])}
                                   for c in columns if times[c]]
                        write_json(args, cells_out + partial, complete=False)
            median = {c: statistics.median(v) for c, v in times.items()}
            n = {"charades": 16, "activitynet": 64, "tacos": 128}[name]
            cells = "".join(f"{median[c]:>13.3f}s" for c in columns)
            base = median.get(("fp32", "full"))
            ratios = " ".join(f"{base / median[c]:.2f}x" for c in columns) if base else ""
            losses = " ".join(f"{results[c]['losses']['total']:.4f}" for c in columns)
            print(f"{name:<12} {hidden:>4} {n:>4} {results[columns[0]]['videos']:>6}{cells}   {ratios}; {losses}", flush=True)
            cells_out += [{**results[c], "column": f"{c[0]}-{c[1]}", "step_s": median[c]} for c in columns]
    if args.json:
        write_json(args, cells_out, complete=True)
    return 0


def write_json(args, cells: list[dict], complete: bool) -> None:
    """Every cell so far to ``--json``, atomically (``complete`` once the last has run)."""
    write_text_atomic(args.json, json.dumps({"variant": args.variant, "device": args.device, "kernels": args.kernels,
                                             "cells": cells, "complete": complete}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
