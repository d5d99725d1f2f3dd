"""Render the demo's videos of coloured shapes with ground-truth captions (no download; deterministic by seed).

    python tools/render_demo_videos.py --out data/demo --seed 0
    python tools/render_demo_videos.py --out DIR --num-train 200 --num-val 50 --num-test 50 --fps 8

Writes DIR/videos/<video_id>.mp4, DIR/{train,val,test}.json (ActivityNet Captions format),
DIR/scenes.json and DIR/meta.json; see g2l/synthetic/render.py.
"""

from __future__ import annotations

import sys
import time

from g2l.cli import OneLineParser
from g2l.synthetic.render import DEFAULT_FPS, DEFAULT_NUM_VIDEOS, render_dataset


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description="Render the demo videos (shapes that appear, leave, move, grow, shrink, turn).")
    parser.add_argument("--out", required=True, help="output folder (created if missing; files are replaced)")
    for split, count in DEFAULT_NUM_VIDEOS.items():
        parser.add_argument(f"--num-{split}", type=int, default=count, help=f"videos in {split} (default {count})")
    parser.add_argument("--seed", type=int, default=0, help="non-negative integer; same seed, same videos (default 0)")
    parser.add_argument("--fps", type=int, default=DEFAULT_FPS, help=f"frames per second written (default {DEFAULT_FPS})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"argument --seed: must be >= 0, got {args.seed}")
    if args.fps < 1:
        parser.error(f"argument --fps: must be >= 1, got {args.fps}")
    for split in DEFAULT_NUM_VIDEOS:
        if getattr(args, f"num_{split}") < 0:
            parser.error(f"argument --num-{split}: must be >= 0, got {getattr(args, f'num_{split}')}")

    began = time.perf_counter()
    try:
        out = render_dataset(args.out, num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
                             seed=args.seed, fps=args.fps, progress=not args.quiet)
    except (ValueError, OSError) as error:
        print(f"render_demo_videos.py: error: {error}", file=sys.stderr)
        return 2
    total = args.num_train + args.num_val + args.num_test
    print(f"rendered {total} videos (seed {args.seed}, {args.fps} fps) to {out} in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
