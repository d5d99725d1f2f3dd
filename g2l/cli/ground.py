"""Grounding: ``g2l-ground`` (one video, or ``--batch``), with what it prints (its JSON and its
explanation table). ``g2l-export`` and ``g2l-app`` have their own modules (export.py, app.py)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from g2l.cli.common import CliError, OneLineParser, check_writable, run_cli, terminal_progress
from g2l.errors import path_problem
from g2l.io import strict_json
from g2l.plots import plot_grounding  # matplotlib is imported only when a plot is drawn


def grounding_json(video: str, duration_s: float, results, explanations=None, domain: dict | None = None) -> dict:
    """What ``g2l-ground --json`` prints: the README's *File formats* (``domain``: the video's
    ``Grounder.domain_check``, present when the model has a domain summary)."""
    from g2l.inference import result_json

    pairs = zip(results, explanations or [None] * len(results))
    return {"video": video, "duration": duration_s, **({"domain": domain} if domain is not None else {}),
            "results": [{"query": r.query, **result_json(r, e)} for r, e in pairs]}


def format_explanation(explanation) -> str:
    """The terminal table of one query's word values: a signed bar per word."""
    m = explanation.moment
    how = "exact" if explanation.exact else f"sampled, {explanation.num_evaluations} coalitions"
    lines = [f"    why {m.start_s:.2f}-{m.end_s:.2f} s (score {m.score:.3f}): Shapley value of each word ({how})",
             f"    values are {explanation.relative_to}"]
    scale = max((abs(w.value) for w in explanation.words), default=0.0) or 1.0
    width = max(len(w.word) for w in explanation.words)
    for w in explanation.words:
        bar = ("+" if w.value >= 0 else "-") * max(1, round(12 * abs(w.value) / scale))
        lines.append(f"      {w.word:<{width}}  {w.value:>+8.4f}  {bar}")
    return "\n".join(lines)


def _ground_parser() -> OneLineParser:
    parser = OneLineParser(
        description='Find when sentences happen in a video. Example: g2l-ground examples/demo.mp4 "the red circle grows". '
                    "Many videos and queries at once: g2l-ground --batch PAIRS.jsonl --out PREDS.jsonl "
                    '(each line {"video": PATH, "query": TEXT} or {"video": PATH, "queries": [TEXT, ...]}).',
    )
    parser.add_argument("video", nargs="?", help="a video file (not with --batch)")
    parser.add_argument("queries", nargs="*", help="one or more sentences, each quoted (not with --batch)")
    parser.add_argument("--checkpoint", default=None, metavar="PATH_OR_REPO",
                        help="a checkpoint file (.pt), a folder written by g2l-export, or a Hugging Face repo id "
                             "(ORG/NAME) of one (default: the demo checkpoint shipped with g2l)")
    parser.add_argument("--top-k", type=int, default=5, help="moments per query (default 5)")
    parser.add_argument("--window", type=float, default=None, metavar="SECONDS",
                        help="ground long videos in overlapping windows of this length")
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    parser.add_argument("--plot", metavar="OUT.png", help="write a timeline and score-map figure")
    parser.add_argument("--gt", type=float, nargs=2, action="append", default=None, metavar=("START", "END"),
                        help="with --plot: the true moment in seconds, drawn on the timeline; once per query, in order")
    parser.add_argument("--device", default="auto",
                        help='"auto" (default: the first CUDA GPU if there is one, else the CPU), "cpu", "cuda", "cuda:1"')
    parser.add_argument("--frame-encoder", default=None, help="override the frame encoder to build (e.g. clip:<folder>)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                        help="forward pass precision (default fp32, whatever the checkpoint was trained in: a query "
                             "gets the same moments on every CPU and in any batch); bf16 is faster where the hardware "
                             "has it, and its answers may differ from fp32 and between CPUs")
    parser.add_argument("--explain", action="store_true",
                        help="for each query's top moment, each word's Shapley value for how far that moment leads "
                             "(table, --json, --plot)")
    parser.add_argument("--explain-target", default="runner_up", choices=["runner_up", "mean", "raw"],
                        help="with --explain: what the word values share out: the top moment's lead over its runner-up "
                             "(default), over the mean of all moments, or its raw score")
    parser.add_argument("--seed", type=int, default=0, help="with --explain: the seed of the sampled orderings of long queries")
    parser.add_argument("--batch", default=None, metavar="PAIRS.jsonl",
                        help="ground every line of this file (needs --out); each video is encoded once")
    parser.add_argument("--out", default=None, metavar="PREDS.jsonl",
                        help="with --batch: where the answers go, one line per input line (appended; lines already "
                             "there are skipped, so a stopped run resumes)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="with --batch: keep frame features here, so a later run only encodes new videos")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (it is drawn only on a terminal anyway)")
    return parser


def _ground(argv: Sequence[str] | None) -> int:
    args = _ground_parser().parse_args(argv)
    # Everything that can be checked without the model is checked first: loading and encoding take long.
    _check_numbers(args)
    if args.batch is not None:
        return _ground_batch(args)
    video_path = _check_one_video(args)
    grounder = _load_grounder(args)
    grounder.check_window(args.window, grounder.fps, what="--window")  # before encoding the video
    with terminal_progress(f"encoding {video_path.name}", quiet=args.quiet) as update:
        video = grounder.encode_video(args.video, progress=update)
    results = grounder.ground(video, args.queries, top_k=args.top_k, window_s=args.window, keep_maps=bool(args.plot))
    domain = grounder.domain_check(video)
    if domain is not None and domain["outside"]:
        from g2l.data.domain import domain_warning

        print(f"warning: {domain_warning(video_path.name, domain)}", file=sys.stderr)
    explanations = _explain(args, grounder, video, results)
    _print_results(args, video_path, video, results, explanations, domain)
    if args.plot:
        _write_plot(args, video_path, video, results, explanations)
    return 0


def _check_numbers(args) -> None:
    """--top-k, --window and --gt, for one video and for --batch alike."""
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1")
    if args.window is not None and not (math.isfinite(args.window) and args.window > 0):
        raise CliError(f"--window must be a positive number of seconds, got {args.window}")
    for start, end in args.gt or []:
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise CliError(f"--gt needs START END in seconds with 0 <= START < END, got {start:g} {end:g}")


def _check_one_video(args):
    """The arguments of one video's grounding, checked before the model loads; the video's path."""
    from pathlib import Path

    for option in ("out", "cache"):
        if getattr(args, option) is not None:
            raise CliError(f"--{option} goes with --batch; to ground one video pass VIDEO QUERY [QUERY ...]")
    if args.video is None or not args.queries:
        raise CliError("pass a video and at least one query (or --batch PAIRS.jsonl --out PREDS.jsonl)")
    from g2l.inference import check_queries  # torch: imported once the arguments are known to need it

    check_queries(args.queries)
    video_path = Path(args.video)
    problem = path_problem(video_path)
    if problem:
        raise CliError(f"video {args.video} {problem}; pass a video file")
    if args.gt is not None and len(args.gt) != len(args.queries):
        raise CliError(f"--gt was given {len(args.gt)} times for {len(args.queries)} queries; give one --gt START END "
                       "per query, in order")
    if args.gt is not None and not args.plot:
        raise CliError("--gt is drawn on the --plot figure; pass --plot OUT.png too")
    check_writable(args.plot, "--plot")
    return video_path


def _explain(args, grounder, video, results) -> list | None:
    """With --explain, each query's explanation of its top moment; else None."""
    if not args.explain:
        return None
    from g2l.explain import explain_top_moment

    return [explain_top_moment(grounder, video, r.query, window_s=args.window, seed=args.seed,
                               target=args.explain_target) for r in results]


def _print_results(args, video_path, video, results, explanations, domain) -> None:
    """The answers on stdout: --json's object, or a table per query (and its explanation)."""
    if args.json:
        print(strict_json.dumps(grounding_json(args.video, video.duration_s, results, explanations, domain)))
    else:
        print(f"{video_path.name}: {video.duration_s:.2f} s")
        for r, explanation in zip(results, explanations or [None] * len(results)):
            print(f"\n  {r.query}")
            print(f"    {'rank':>4}  {'start_s':>8}  {'end_s':>8}  {'score':>6}")
            for rank, m in enumerate(r.moments, start=1):
                print(f"    {rank:>4}  {m.start_s:>8.2f}  {m.end_s:>8.2f}  {m.score:>6.3f}")
            if explanation is not None:
                print(format_explanation(explanation))
    sys.stdout.flush()  # the results are shown even if the plot then fails


def _write_plot(args, video_path, video, results, explanations) -> None:
    try:
        plot_grounding(args.plot, video_path.name, video.duration_s, results, explanations,
                       [tuple(gt) for gt in args.gt] if args.gt is not None else None)
    except OSError as error:
        raise CliError(f"--plot {args.plot} could not be written ({error.strerror or error}); "
                       "the results above are complete") from None
    if not args.json:
        print(f"\nplot written to {args.plot}")


def _load_grounder(args):
    from g2l.assets import demo_checkpoint
    from g2l.engine.distributed import resolve_device
    from g2l.inference import Grounder

    checkpoint = args.checkpoint or str(demo_checkpoint())
    problem = path_problem(checkpoint)  # "does not exist" may still be a hub repo id; these never are
    if problem and problem.startswith("cannot be"):
        raise CliError(f"--checkpoint {checkpoint} {problem}; pass a checkpoint file, a folder written by g2l-export "
                       "or a Hugging Face repo id")
    resolve_device(args.device, setting="--device")
    return Grounder.from_pretrained(checkpoint, device=args.device, frame_encoder=args.frame_encoder,
                                    precision=args.precision)


def _ground_batch(args) -> int:
    """``--batch PAIRS.jsonl --out PREDS.jsonl``: g2l/batch.py, with a bar over videos and a summary.
    Exit status 0 when every line was answered (now or before), 1 when any line failed."""
    from g2l.batch import ground_batch, plan_batch

    if args.video is not None or args.queries:
        raise CliError("--batch reads the videos and queries from its file; pass no VIDEO or QUERY arguments")
    if args.out is None:
        raise CliError("--batch needs --out PREDS.jsonl, the file the answers are appended to")
    if args.plot is not None or args.gt is not None:
        raise CliError("--plot and --gt draw one video; they do not go with --batch")
    check_writable(args.out, "--out")
    if args.cache is not None:  # checked before any work: one that cannot be used warns, and the run goes on without
        from g2l.feature_cache import usable_folder

        args.cache = usable_folder(args.cache)

    def failed(line_no: int, reason: str) -> None:
        print(f"{args.batch}:{line_no}: {reason}", file=sys.stderr)

    # The output stays locked from here to the end; a bad pairs file or output stops here, before the model loads.
    with plan_batch(args.batch, args.out) as plan:
        grounder = _load_grounder(args)
        if args.window is not None:
            grounder.check_window(args.window, grounder.fps, what="--window")
        with terminal_progress("videos", quiet=args.quiet, total=len(plan.videos), unit="video") as update:
            summary = ground_batch(grounder, args.batch, args.out, top_k=args.top_k, window_s=args.window,
                                   explain=args.explain, explain_target=args.explain_target, seed=args.seed,
                                   cache_dir=args.cache, plan=plan,
                                   on_video=lambda done, total, name: update(done), on_failure=failed)
    print(f"g2l-ground --batch: {summary.report()}", file=sys.stderr)
    return 1 if summary.failures else 0


def ground_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_ground, argv)
