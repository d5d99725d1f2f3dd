"""Rebuild the shipped demo checkpoint and example video (about 20 minutes on 2 CPU cores).

    python tools/build_demo.py [--work-dir /tmp/g2l-demo] [--seed 0]
"""

import json
import sys

from g2l.cli import OneLineParser
from g2l.demo import build_demo

if __name__ == "__main__":
    parser = OneLineParser(prog="tools/build_demo.py", description=__doc__)
    parser.add_argument("--work-dir", default="/tmp/g2l-demo", help="where the rendered data and the run go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=560)
    parser.add_argument("--num-test", type=int, default=60)
    parser.add_argument("overrides", nargs="*", help="config overrides for the demo training")
    args = parser.parse_args()
    if args.seed < 0 or args.num_train < 1 or args.num_test < 1:
        parser.error("--seed must be >= 0 and --num-train, --num-test >= 1")
    summary = build_demo(args.work_dir, num_train=args.num_train, num_test=args.num_test, seed=args.seed,
                         overrides=args.overrides)
    print(json.dumps(summary, indent=2))
    sys.exit(0)
