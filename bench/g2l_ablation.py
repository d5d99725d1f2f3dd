"""The loss choices on a synthetic benchmark, several seeds each:

    MMN (L_bce + L_v + L_s)  ->  G2L as configured (L_GCL with one positive + L_SSI)  ->  G2L as the paper (five positives)

A rung is an overlay in configs/ablation/ (its file name: mmn, ssi_p1, ssi, gcl_authors). Each run
is `tools/train.py --config <base config> --config configs/ablation/<rung>.yaml train.seed=<s>` in
its own process; the table shows the mean and standard deviation over seeds of the last epoch's
test metrics (the test split selects nothing), and for L_GCL the share of its positives (other than
g_j) with IoU < 0.5 in the first and last epoch. Given the same --out, a later invocation reuses the
runs that finished and skips those whose folder exists without a result, so several invocations can
share the work, and a last one prints the table.

The full ablation ladder that decided these choices (2D map + BCE, + GCL alone, an IoU floor for the
positives, MIL-NCE, the moment-to-moment push, 1 - G' negatives, ...) is at git tag ablation-2026-12:
check it out (`git worktree add /tmp/ablation ablation-2026-12`) and run this script there.

    python bench/g2l_ablation.py --data DIR [--base-config configs/synthetic_charades.yaml] [--seeds 0,1,2]
                                 [--jobs 2] [--rungs mmn,ssi_p1,ssi] [key=value ...]

DIR is a folder written by tools/make_synthetic.py (for the sparse-annotation benchmark:
`--preset charades --sparse-annotation 0.5`); when missing it is generated from `--preset` (charades,
activitynet or tacos; the base config defaults to configs/synthetic_<preset>.yaml). `--jobs N` runs N
trainings at once, each in its own process with one CPU thread: on one GPU they share the device
(add `train.device=cuda`), which is how the activitynet comparison is meant to run:

    python bench/g2l_ablation.py --preset activitynet --data /tmp/syn-anet --seeds 0,1,2 --rungs mmn,ssi_p1 \
        --jobs 6 train.device=cuda
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNGS = {"mmn": "MMN", "ssi_p1": "G2L (1 GCL pos.)", "ssi": "G2L, paper (5 pos.)", "gcl_authors": "GCL, authors' form"}
WRONG = "train_epoch/stat_gcl_positives_iou_below_0.5"


def run_one(rung: str, seed: int, data: Path, out: Path, base_config: Path, overrides: list[str]) -> dict:
    name = f"{rung}-seed{seed}"
    done = out / f"{name}.result.json"
    if done.is_file():  # finished by an earlier invocation with the same --out
        return json.loads(done.read_text())
    if (out / name).exists():  # running in another invocation with the same --out, or unfinished
        print(f"  {name}: skipped, its run folder exists without a result", flush=True)
        return None
    args = [
        sys.executable, str(REPO / "tools" / "train.py"),
        "--config", str(base_config),
        "--config", str(REPO / "configs" / "ablation" / f"{rung}.yaml"),
        f"data.train_annotations={data / 'train.json'}", f"data.val_annotations={data / 'val.json'}",
        f"data.test_annotations={data / 'test.json'}", f"data.features={data / 'features.hdf5'}",
        f"log.output_dir={out}", f"log.run_name={name}", "log.progress=false", "train.num_threads=1",
        f"train.seed={seed}", *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(args, check=False, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    print(f"  {name}: R1@0.5 {100 * last['eval/R1@0.5']:.2f}  ({seconds / 60:.1f} min)", flush=True)
    result = {"rung": rung, "seed": seed, "seconds": seconds, **{k[5:]: v for k, v in last.items() if k.startswith("eval/")}}
    if WRONG in last:
        result["wrong_positives_first"], result["wrong_positives_last"] = records[0][WRONG], last[WRONG]
    done.write_text(json.dumps(result))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/g2l-synthetic-charades")
    parser.add_argument("--preset", default="charades", choices=["charades", "activitynet", "tacos"],
                        help="the synthetic preset generated into --data when it is missing (default charades)")
    parser.add_argument("--base-config", default=None,
                        help="the dataset config the rungs are stacked on (default configs/synthetic_<preset>.yaml)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rungs", default="mmn,ssi_p1,ssi")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("overrides", nargs="*", help="config overrides applied to every run")
    args = parser.parse_args()
    data = Path(args.data)
    args.base_config = args.base_config or str(REPO / "configs" / f"synthetic_{args.preset}.yaml")
    if not (data / "features.hdf5").is_file():
        sys.path.insert(0, str(REPO))
        from g2l.synthetic.benchmark import generate_synthetic

        generate_synthetic(data, args.preset, 0, progress=False)
    out = Path(args.out or f"/tmp/g2l-ablation-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    rungs = args.rungs.split(",")
    for rung in rungs:
        if not (REPO / "configs" / "ablation" / f"{rung}.yaml").is_file():
            parser.error(f"no overlay configs/ablation/{rung}.yaml for rung {rung!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(rung, seed) for seed in seeds for rung in rungs]
    print(f"{len(jobs)} runs, {args.jobs} at a time; run folders in {out}", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = [r for r in pool.map(lambda job: run_one(job[0], job[1], data, out, Path(args.base_config), args.overrides), jobs) if r]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{data.name} ({Path(args.base_config).name}), test split, last epoch (mean ± sd over seeds, percent)")
    print(f"{'rung':<24} {'R1@0.5':>14} {'R1@0.7':>14} {'mIoU':>14} {'min/run':>8} {'seeds':>5} {'IoU<0.5 pos.':>13}")
    for rung in rungs:
        rows = [r for r in results if r["rung"] == rung]
        if not rows:
            continue

        def cell(key, rows=rows):
            values = [100 * r[key] for r in rows]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):7.2f} ± {sd:4.2f}"

        minutes = statistics.mean(r["seconds"] for r in rows) / 60
        wrong = [r for r in rows if "wrong_positives_last" in r]
        share = (f"{100 * statistics.mean(r['wrong_positives_first'] for r in wrong):4.0f}->"
                 f"{100 * statistics.mean(r['wrong_positives_last'] for r in wrong):3.0f}%") if wrong else ""
        print(f"{RUNGS.get(rung, rung):<24} {cell('R1@0.5'):>14} {cell('R1@0.7'):>14} {cell('mIoU'):>14} {minutes:8.1f} "
              f"{len(rows):5d} {share:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
