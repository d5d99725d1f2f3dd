"""Write the built-in synthetic grounding benchmark (no download; deterministic by seed).

    python tools/make_synthetic.py --out data/synthetic_charades --preset charades --seed 0
    python tools/make_synthetic.py --out DIR --preset tacos --seed 1 --size full
    python tools/make_synthetic.py --out DIR --preset activitynet --seed 0 --num-train 200 --num-val 50 --num-test 50
    python tools/make_synthetic.py --out DIR --preset charades --seed 0 --sparse-annotation 0.5   # G2L's premise

Writes DIR/{train,val,test}.json, DIR/features.hdf5 and DIR/meta.json; see g2l/synthetic/benchmark.py.
"""

from __future__ import annotations

import sys
import time

from g2l.cli import OneLineParser
from g2l.synthetic.benchmark import PRESETS, SIZES, generate_synthetic


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description="Write the synthetic grounding benchmark.")
    parser.add_argument("--out", required=True, help="output folder (created if missing; files are replaced)")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), help="which benchmark to imitate")
    parser.add_argument("--seed", required=True, type=int, help="non-negative integer; same seed, same files")
    parser.add_argument("--size", default="default", choices=SIZES,
                        help="default: trains on a CPU in minutes; full: the real benchmark's number of videos")
    for split in ("train", "val", "test"):
        parser.add_argument(f"--num-{split}", type=int, default=None, help=f"videos in {split} (overrides --size)")
    parser.add_argument("--feature-key", default=None,
                        help="store f[video][KEY] instead of f[video] (e.g. c3d_features, ActivityNet's public layout)")
    parser.add_argument("--sparse-annotation", type=float, default=0.0, metavar="P",
                        help="training split: a fraction P of the queried events happen a second time, unannotated "
                             "(G2L's premise; val and test unchanged). Default 0")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"argument --seed: must be >= 0, got {args.seed}")
    for split in ("train", "val", "test"):
        count = getattr(args, f"num_{split}")
        if count is not None and count < 1:
            parser.error(f"argument --num-{split}: must be >= 1, got {count}")

    if not 0.0 <= args.sparse_annotation <= 1.0:
        parser.error(f"argument --sparse-annotation: must be a fraction in [0, 1], got {args.sparse_annotation}")

    began = time.perf_counter()
    try:
        out = generate_synthetic(args.out, args.preset, args.seed, args.size, args.num_train, args.num_val,
                                 args.num_test, feature_key=args.feature_key, sparse_annotation=args.sparse_annotation,
                                 progress=not args.quiet)
    except (ValueError, OSError) as error:
        print(f"make_synthetic.py: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.preset} (seed {args.seed}) to {out} in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
