"""What one real training epoch costs, MMN against G2L as configured, on synthetic data of a public
benchmark's shape (the activitynet preset by default: long videos, up to tens of sentences each).

    python bench/epoch_cost.py [--preset activitynet] [--videos 800] [--rungs mmn,ssi_p1] [key=value ...]

Each rung is `tools/train.py --config configs/synthetic_<preset>.yaml --config configs/ablation/<rung>.yaml
train.epochs=1` in its own fresh process, one thread, on the same generated data (made once into
/tmp/g2l-epoch-cost-<preset>-<videos>/ when missing); the figure is the training loop of the epoch
(`train_epoch/seconds` in metrics.jsonl: every step, its losses and backward pass, not the evaluation)
and the share of it spent waiting for data. The rungs run one after the other, so time them on an
otherwise idle machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sentence_counts(annotations: Path) -> list[int]:
    data = json.loads(annotations.read_text())
    return [len(entry["sentences"]) for entry in data.values()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="activitynet", choices=["charades", "activitynet", "tacos"])
    parser.add_argument("--videos", type=int, default=800, help="training videos generated")
    parser.add_argument("--rungs", default="mmn,ssi_p1", help="overlays of configs/ablation/ (the first is the baseline)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (e.g. loss.kernels=torch)")
    args = parser.parse_args()
    data = Path(f"/tmp/g2l-epoch-cost-{args.preset}-{args.videos}")
    if not (data / "meta.json").is_file():
        sys.path.insert(0, str(REPO))
        from g2l.synthetic.benchmark import generate_synthetic

        generate_synthetic(data, args.preset, 0, num_train=args.videos, num_val=20, num_test=20, progress=False)
    counts = sentence_counts(data / "train.json")
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for rung in args.rungs.split(","):
            cmd = [sys.executable, str(REPO / "tools" / "train.py"),
                   "--config", str(REPO / "configs" / f"synthetic_{args.preset}.yaml"),
                   "--config", str(REPO / "configs" / "ablation" / f"{rung}.yaml"),
                   f"data.train_annotations={data / 'train.json'}", f"data.val_annotations={data / 'val.json'}",
                   f"data.test_annotations={data / 'test.json'}", f"data.features={data / 'features.hdf5'}",
                   f"log.output_dir={runs}", f"log.run_name={rung}", "log.progress=false", "log.wandb=off",
                   "train.epochs=1", "train.num_threads=1", *args.overrides]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{rung} failed: {proc.stderr.strip()[-800:]}")
            record = json.loads((Path(runs) / rung / "metrics.jsonl").read_text().splitlines()[-1])
            rows.append((rung, record["train_epoch/seconds"], record.get("train_epoch/data_wait_share"),
                         time.perf_counter() - started))
    print(f"synthetic {args.preset}, {len(counts)} training videos: sentences per video mean {statistics.mean(counts):.1f}, "
          f"max {max(counts)}, {sum(c >= 12 for c in counts)} with 12 or more; {' '.join(args.overrides) or 'defaults'}")
    print(f"{'rung':<10} {'epoch s':>9} {'x baseline':>11} {'data wait':>10} {'process s':>10}")
    for rung, seconds, wait, total in rows:
        wait_text = f"{100 * wait:.1f}%" if wait is not None else "-"
        print(f"{rung:<10} {seconds:>9.1f} {seconds / rows[0][1]:>10.2f}x {wait_text:>10} {total:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
