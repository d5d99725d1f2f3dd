"""Train the MMN configuration on the charades preset of the synthetic benchmark on the CPU, and a
text-blind control whose training sentences are shuffled across videos, and print R1@0.5, R1@0.7
and mIoU of both on the test split beside the prior-only and random-ranking floors.

    python bench/train_synthetic.py [--data /tmp/g2l-synthetic-charades] [--config configs/synthetic_charades.yaml]
                                    [--skip-control] [key=value ...]

The metrics are those of the last epoch (not the best one: the test split picks nothing here).
Target: R1@0.5 at least twice the prior-only floor within 20 minutes on 2 cores; the control
should stay near the floor, which shows the model reads the sentence.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2l.config import load_config  # noqa: E402
from g2l.data.annotations import load_annotations  # noqa: E402
from g2l.eval.baselines import prior_only_metrics, random_ranking_metrics  # noqa: E402


def shuffled_copy(train_json: Path, out: Path, seed: int = 0) -> Path:
    """The same videos and windows, with every sentence moved to a random other query."""
    data = json.loads(train_json.read_text())
    sentences = [s for record in data.values() for s in record["sentences"]]
    random.Random(seed).shuffle(sentences)
    position = 0
    for record in data.values():
        count = len(record["sentences"])
        record["sentences"] = sentences[position:position + count]
        position += count
    out.write_text(json.dumps(data))
    return out


def run(config, data: Path, train_json: Path, run_name: str, out_dir: Path, overrides: list[str]) -> tuple[dict, float]:
    from g2l.train import train

    cfg = load_config(config, [
        f"data.train_annotations={train_json}", f"data.val_annotations={data / 'val.json'}",
        f"data.test_annotations={data / 'test.json'}", f"data.features={data / 'features.hdf5'}",
        f"log.output_dir={out_dir}", f"log.run_name={run_name}", *overrides,
    ])
    start = time.perf_counter()
    result = train(cfg)
    return result.last_metrics, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/g2l-synthetic-charades")
    parser.add_argument("--config", default=str(REPO / "configs" / "synthetic_charades.yaml"))
    parser.add_argument("--out", default=None, help="run folders (default: a new folder under /tmp)")
    parser.add_argument("--skip-control", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "features.hdf5").is_file():
        from g2l.synthetic.benchmark import generate_synthetic

        generate_synthetic(data, "charades", 0, progress=False)
    out = Path(args.out or f"/tmp/g2l-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, args.overrides)
    train, _ = load_annotations(data / "train.json")
    test, _ = load_annotations(data / "test.json")
    prior = prior_only_metrics(train, test, cfg.eval.recall_at, cfg.eval.iou_thresholds)
    rand = random_ranking_metrics(test, num_clips=cfg.model.num_clips, pooling_counts=cfg.model.pooling_counts,
                                  nms_thresh=cfg.eval.nms_thresh, recall_at=cfg.eval.recall_at,
                                  iou_thresholds=cfg.eval.iou_thresholds)
    rows = [("random ranking", rand, None), ("prior only", prior, None)]
    model, seconds = run(args.config, data, data / "train.json", "mmn", out, ["log.progress=false", *args.overrides])
    rows.append(("MMN", model, seconds))
    if not args.skip_control:
        shuffled = shuffled_copy(data / "train.json", out / "train_shuffled.json")
        control, control_s = run(args.config, data, shuffled, "mmn-text-blind", out, ["log.progress=false", *args.overrides])
        rows.append(("MMN, shuffled sentences", control, control_s))
    print(f"\nsynthetic charades, test split ({len(test)} queries); config {Path(args.config).name}")
    print(f"{'':<26} {'R1@0.5':>7} {'R1@0.7':>7} {'mIoU':>7} {'minutes':>8}")
    for name, metrics, secs in rows:
        minutes = f"{secs / 60:8.1f}" if secs is not None else f"{'':>8}"
        print(f"{name:<26} {100 * metrics['R1@0.5']:7.2f} {100 * metrics['R1@0.7']:7.2f} {100 * metrics['mIoU']:7.2f} {minutes}")
    ratio = model["R1@0.5"] / max(prior["R1@0.5"], 1e-9)
    print(f"\nMMN R1@0.5 is {ratio:.2f}x the prior-only floor (target >= 2x)")
    (out / "summary.json").write_text(json.dumps({name: m for name, m, _ in rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
