"""The command line: every g2l command's arguments, terminal output and exit status.

One ``<name>_main(argv)`` per command; the console scripts of pyproject.toml (``g2l-train``,
``g2l-ground``, ...) and the scripts in tools/ (the same commands in a clone) call them. Each
parses its arguments, calls the library and prints. Exit status: 0 done; 1 nothing could be done
(every video failed to extract); 2 bad input, as one line on stderr and never a traceback
(bad arguments, and any ``G2LError`` the library raises); 130 interrupted; 141 the reader closed
stdout early (``| head``). No other module parses arguments or prints for the terminal tools.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from g2l.errors import G2LError
from g2l.plots import plot_grounding  # matplotlib is imported only when a plot is drawn


class CliError(G2LError):
    """A bad command-line argument; the message says what to pass instead."""


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr (``error: ...; see --help``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def _one_line(error: BaseException) -> str:
    """The message of a user error; one raised in a DataLoader worker arrives wrapped in the
    worker's traceback, whose last line holds it."""
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main``; a user error becomes ``error: <message>`` on stderr and exit status 2, a
    warning one ``warning: <message>`` line, and a reader that closes stdout early (``| head``)
    ends the tool quietly."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            code = main(argv)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except BrokenPipeError:
            _silence_stdout()
            return 141  # as a tool killed by SIGPIPE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except G2LError as error:  # bad input, whichever module found it: one line, no traceback
            print(f"error: {_one_line(error)}", file=sys.stderr)
            return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (e.g. captured)
        pass


def _iou_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated IoU thresholds in (0, 1], got '{text}'")
    return values


def _rank_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(v >= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated ranks (integers >= 1), got '{text}'")
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got '{text}'")
    return value


def _check_writable(path: str | None, option: str) -> None:
    """Refuse an output path that cannot be written before any work is done."""
    if path:
        from g2l.atomic import unwritable_reason

        problem = unwritable_reason(path)
        if problem:
            raise CliError(f"{option} {path} {problem}; pass a file path in a folder you can write to")


def _write_json_atomic(path: str, data: dict) -> None:
    from g2l.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _eval(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Score a predictions file (no model code), or evaluate a checkpoint on a split.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", help="a predictions file (JSON lines) to re-score")
    source.add_argument("--checkpoint", help="a checkpoint to evaluate (writes a predictions file)")
    parser.add_argument("--split", default=None, help="with --checkpoint: the split to evaluate (default: the config's eval split)")
    parser.add_argument("--nms", type=_fraction, default=None, help="NMS threshold for score maps (default 0.5, or the checkpoint's)")
    parser.add_argument("--iou-thresholds", type=_iou_list, default=None, help="e.g. 0.3,0.5,0.7")
    parser.add_argument("--recall-at", type=_rank_list, default=None, help="e.g. 1,5")
    parser.add_argument("--json", dest="json_out", default=None, help="write the metrics as JSON here")
    parser.add_argument("--out", default=None, help="with --checkpoint: where to write the predictions file")
    parser.add_argument("--dump-maps", action="store_true", help="with --checkpoint: add score maps to the predictions")
    parser.add_argument("--device", default="auto", help="with --checkpoint: cpu, cuda, or auto")
    parser.add_argument("overrides", nargs="*", help="with --checkpoint: dotted config overrides (data.features=...)")
    args = parser.parse_args(argv)
    _check_writable(args.json_out, "--json")
    _check_writable(args.out, "--out")

    from g2l.eval.metrics import format_metrics_table

    if args.predictions:
        from g2l.eval.predictions import read_predictions, rescore_predictions

        if args.overrides:
            raise CliError("config overrides only apply with --checkpoint")
        iou_thresholds = args.iou_thresholds or [0.3, 0.5, 0.7]
        recall_at = args.recall_at or [1, 5]
        predictions = read_predictions(args.predictions)
        metrics = rescore_predictions(predictions, 0.5 if args.nms is None else args.nms, recall_at, iou_thresholds)
    else:
        from g2l.engine.distributed import resolve_device
        from g2l.eval.evaluator import evaluate_checkpoint

        resolve_device(args.device, setting="--device")
        result = evaluate_checkpoint(
            args.checkpoint,
            split=args.split,
            overrides=args.overrides,
            predictions_out=args.out,
            dump_maps=args.dump_maps,
            device=args.device,
            nms_thresh=args.nms,
            iou_thresholds=args.iou_thresholds,
            recall_at=args.recall_at,
        )
        metrics, iou_thresholds, recall_at = result.metrics, result.iou_thresholds, result.recall_at
        print(f"predictions written to {result.predictions_path}", file=sys.stderr)
    print(format_metrics_table(metrics, recall_at, iou_thresholds))
    if args.json_out:
        _write_json_atomic(args.json_out, metrics)
    return 0


def eval_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_eval, argv)


def _train(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Train a grounding model. Example: g2l-train --config configs/charades.yaml train.lr=2e-4",
    )
    parser.add_argument("--config", action="append", help="a YAML config (see configs/); repeat to stack overlays")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder from checkpoints/last.pt")
    parser.add_argument("--wandb", choices=["online", "offline", "off", "auto"], default=None,
                        help="W&B mode (default: the config's log.wandb; auto = online with credentials, else offline)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.num_clips=64 train.epochs=3")
    args = parser.parse_args(argv)
    overrides = list(args.overrides) + ([f"log.wandb={args.wandb}"] if args.wandb else [])
    from g2l.config import load_config
    from g2l.train import train

    if args.resume:
        if args.config:
            raise CliError("--resume takes its config from the run folder; drop --config (overrides are allowed)")
        result = train(resume_dir=args.resume, overrides=overrides)
    else:
        if not args.config:
            raise CliError("pass --config configs/<dataset>.yaml (or --resume RUN_DIR)")
        result = train(load_config(args.config, overrides))
    best = result.best
    if best:
        shown = "  ".join(f"{k} {100 * v:.2f}" for k, v in best.items() if k.startswith("R1@") or k == "mIoU")
        print(f"best epoch {best.get('epoch')}: {shown}")
    print(f"run folder: {result.run_dir}")
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_train, argv)


def grounding_json(video: str, duration_s: float, results, explanations=None) -> dict:
    """What ``g2l-ground --json`` prints (and ``g2l-app`` shows): the README's *File formats*."""
    out = []
    for r, explanation in zip(results, explanations or [None] * len(results)):
        entry = {"query": r.query, "moments": [{"start": m.start_s, "end": m.end_s, "score": m.score} for m in r.moments]}
        if explanation is not None:
            entry["explanation"] = [{"word": w.word, "value": w.value} for w in explanation.words]
        out.append(entry)
    return {"video": video, "duration": duration_s, "results": out}


def format_explanation(explanation) -> str:
    """The terminal table of one query's word values: a signed bar per word."""
    m = explanation.moment
    how = "exact" if explanation.exact else f"sampled, {explanation.num_evaluations} coalitions"
    lines = [f"    why {m.start_s:.2f}-{m.end_s:.2f} s (score {explanation.value_all:.3f}; no words "
             f"{explanation.value_none:.3f}): Shapley value of each word ({how})"]
    scale = max((abs(w.value) for w in explanation.words), default=0.0) or 1.0
    width = max(len(w.word) for w in explanation.words)
    for w in explanation.words:
        bar = ("+" if w.value >= 0 else "-") * max(1, round(12 * abs(w.value) / scale))
        lines.append(f"      {w.word:<{width}}  {w.value:>+8.4f}  {bar}")
    return "\n".join(lines)


def _ground(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description='Find when sentences happen in a video. Example: g2l-ground examples/demo.mp4 "the red circle grows"',
    )
    parser.add_argument("video", help="a video file")
    parser.add_argument("queries", nargs="+", help="one or more sentences")
    parser.add_argument("--checkpoint", default=None, help="a g2l checkpoint (default: the demo checkpoint shipped with g2l)")
    parser.add_argument("--top-k", type=int, default=5, help="moments per query (default 5)")
    parser.add_argument("--window", type=float, default=None, metavar="SECONDS",
                        help="ground long videos in overlapping windows of this length")
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    parser.add_argument("--plot", metavar="OUT.png", help="write a timeline and score-map figure")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frame-encoder", default=None, help="override the frame encoder to build (e.g. clip:<folder>)")
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "auto"],
                        help="forward pass precision (default: the checkpoint's train.precision)")
    parser.add_argument("--explain", action="store_true",
                        help="for each query's top moment, each word's Shapley value for its score (table, --json, --plot)")
    parser.add_argument("--seed", type=int, default=0, help="with --explain: the seed of the sampled orderings of long queries")
    args = parser.parse_args(argv)
    from pathlib import Path

    # Everything that can be checked without the model is checked first: loading and encoding take long.
    if any(not q.strip() for q in args.queries):
        raise CliError("a query is empty; pass each sentence as a non-empty quoted argument")
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1")
    if args.window is not None and not (math.isfinite(args.window) and args.window > 0):
        raise CliError(f"--window must be a positive number of seconds, got {args.window}")
    if Path(args.video).is_dir():
        raise CliError(f"video {args.video} is a directory; pass a video file")
    if not Path(args.video).is_file():
        raise CliError(f"video file {args.video} does not exist; check the path")
    _check_writable(args.plot, "--plot")
    from g2l.assets import demo_checkpoint
    from g2l.engine.distributed import resolve_device
    from g2l.inference import Grounder

    checkpoint = args.checkpoint or str(demo_checkpoint())
    resolve_device(args.device, setting="--device")
    grounder = Grounder.from_pretrained(checkpoint, device=args.device, frame_encoder=args.frame_encoder,
                                        precision=args.precision)
    grounder.check_window(args.window, grounder.fps, what="--window")  # before encoding the video
    video = grounder.encode_video(args.video)
    results = grounder.ground(video, args.queries, top_k=args.top_k, window_s=args.window, keep_maps=bool(args.plot))
    explanations = None
    if args.explain:
        from g2l.explain import explain_top_moment

        explanations = [explain_top_moment(grounder, video, r.query, window_s=args.window, seed=args.seed)
                        for r in results]
    if args.json:
        print(json.dumps(grounding_json(args.video, video.duration_s, results, explanations)))
    else:
        print(f"{Path(args.video).name}: {video.duration_s:.2f} s")
        for r, explanation in zip(results, explanations or [None] * len(results)):
            print(f"\n  {r.query}")
            print(f"    {'rank':>4}  {'start_s':>8}  {'end_s':>8}  {'score':>6}")
            for rank, m in enumerate(r.moments, start=1):
                print(f"    {rank:>4}  {m.start_s:>8.2f}  {m.end_s:>8.2f}  {m.score:>6.3f}")
            if explanation is not None:
                print(format_explanation(explanation))
    sys.stdout.flush()  # the results are shown even if the plot then fails
    if args.plot:
        try:
            plot_grounding(args.plot, Path(args.video).name, video.duration_s, results, explanations)
        except OSError as error:
            raise CliError(f"--plot {args.plot} could not be written ({error.strerror or error}); "
                           "the results above are complete") from None
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0


def ground_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_ground, argv)


def _baselines(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(description="Prior-only and random-ranking floors of a dataset config (annotations only).")
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--split", default=None, help="the split to score (default: data.eval_split)")
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    from pathlib import Path

    from g2l.config import load_config
    from g2l.data.annotations import load_annotations
    from g2l.eval.baselines import prior_only_metrics, random_ranking_metrics
    from g2l.eval.metrics import format_metrics_table

    cfg = load_config(args.config, args.overrides)
    split = args.split or cfg.data.eval_split
    fmt = cfg.data.annotation_format or None
    train, _ = load_annotations(Path(cfg.data.train_annotations), fmt)
    test, _ = load_annotations(Path(getattr(cfg.data, f"{split}_annotations")), fmt)
    e = cfg.eval
    prior = prior_only_metrics(train, test, e.recall_at, e.iou_thresholds)
    random = random_ranking_metrics(test, num_clips=cfg.model.num_clips, pooling_counts=cfg.model.pooling_counts,
                                    nms_thresh=e.nms_thresh, recall_at=e.recall_at, iou_thresholds=e.iou_thresholds)
    a, b = prior["moment"]
    print(f"prior only (fixed moment [{a:.2f} D, {b:.2f} D] learned from train):")
    print(format_metrics_table(prior, e.recall_at, e.iou_thresholds))
    print("\nrandom ranking (uniform scores over the valid cells, NMS):")
    print(format_metrics_table(random, e.recall_at, e.iou_thresholds))
    if args.json_out:
        _write_json_atomic(args.json_out, {"prior_only": prior, "random": random})
    return 0


def baselines_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_baselines, argv)


def _extract(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Extract per-frame features of videos into an HDF5 file (f[video_id] -> (T, d) float32). "
                    "Example: g2l-extract videos/ --out features.hdf5 --encoder mobilenet_v2 --fps 1",
    )
    parser.add_argument("videos", nargs="+", help="video files, folders of videos, or .txt files listing video paths")
    parser.add_argument("--out", required=True, help="output .hdf5 file (created, or resumed when it exists)")
    parser.add_argument("--encoder", default="mobilenet_v2",
                        help="'mobilenet_v2' (default), 'mobilenet_v2_grid2' or 'clip:<hub name or folder>'")
    parser.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per encoder batch (default 32)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    args = parser.parse_args(argv)
    if not args.fps > 0:
        parser.error(f"--fps must be positive, got {args.fps}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    from g2l.video.feature_extraction import extract_features_to_hdf5, list_videos

    videos = list_videos(args.videos)
    if not videos:
        raise CliError("no video to extract (the .txt lists are empty)")

    import torch

    from g2l.video.frame_encoders import build_frame_encoder

    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except Exception as error:  # RuntimeError (bad name), AssertionError (no CUDA build), NotImplementedError
        raise CliError(f"--device {args.device!r} is not usable here ({str(error).splitlines()[0][:120]})") from None
    encoder = build_frame_encoder(args.encoder, device=device)
    report = extract_features_to_hdf5(videos, args.out, encoder, fps=args.fps, batch_size=args.batch_size,
                                      progress=not args.no_progress)
    print(report.summary(), file=sys.stderr)
    return 0 if report.extracted or report.skipped else 1


def extract_main(argv: Sequence[str] | None = None) -> int:
    """0: the output holds at least one of the videos (extracted now or before); 1: every video
    failed; 2: bad input (including an output file made with another encoder or fps)."""
    return run_cli(_extract, argv)


def _make_synthetic(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Write the built-in synthetic grounding benchmark (no download; deterministic by seed): "
                    "DIR/{train,val,test}.json, DIR/features.hdf5 and DIR/meta.json. "
                    "Example: g2l-make-synthetic --out data/synthetic_charades --preset charades --seed 0",
    )
    from g2l.synthetic.benchmark import PRESETS, SIZES, generate_synthetic

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

    import time

    began = time.perf_counter()
    try:
        out = generate_synthetic(args.out, args.preset, args.seed, args.size, args.num_train, args.num_val,
                                 args.num_test, feature_key=args.feature_key, sparse_annotation=args.sparse_annotation,
                                 progress=not args.quiet)
    except OSError as error:
        raise CliError(f"cannot write the benchmark to {args.out} ({error})") from None
    print(f"wrote {args.preset} (seed {args.seed}) to {out} in {time.perf_counter() - began:.1f} s")
    return 0


def make_synthetic_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_make_synthetic, argv)


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
    parser.add_argument("--num-test", type=int, default=60)
    parser.add_argument("overrides", nargs="*", help="config overrides for the demo training")
    args = parser.parse_args(argv)
    if args.seed < 0 or args.num_train < 1 or args.num_test < 1:
        parser.error("--seed must be >= 0 and --num-train, --num-test >= 1")
    from g2l.demo import build_demo

    summary = build_demo(args.work_dir, repo=args.repo, num_train=args.num_train, num_test=args.num_test,
                         seed=args.seed, overrides=args.overrides)
    print(json.dumps(summary, indent=2))
    return 0


def build_demo_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_build_demo, argv)


def _real_stats(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Recompute the moment statistics of the real benchmarks that the synthetic generator copies, "
                    "and print them as the RECORDED entries of g2l/synthetic/real_stats.py. "
                    "Example: g2l-real-stats ../shared/data/annotations",
    )
    parser.add_argument("annotations", help="the folder of the public annotation files")
    args = parser.parse_args(argv)
    from pathlib import Path

    from g2l.synthetic.real_stats import format_recorded_statistics

    print(format_recorded_statistics(Path(args.annotations)))
    return 0


def real_stats_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_real_stats, argv)


def _export(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Write a checkpoint as a Hugging Face layout folder (model.safetensors, config.json, tokenizer "
                    "files, frame_encoder.json, a README.md model card) that Grounder.from_pretrained and "
                    "--checkpoint load. Example: g2l-export runs/my-run/checkpoints/best.pt my-model",
    )
    parser.add_argument("checkpoint", help="a g2l checkpoint (or an exported folder, or a hub repo id)")
    parser.add_argument("out_dir", help="the folder to write (created; its files are replaced)")
    parser.add_argument("--floors", default=None, metavar="FLOORS.json",
                        help="the JSON of g2l-baselines --json, shown beside the metrics in the model card")
    parser.add_argument("--name", default=None, help="the model card's title (default: the folder's name)")
    parser.add_argument("--push-to-hub", default=None, metavar="ORG/NAME",
                        help="then upload the folder to this Hugging Face repo (created if missing; needs a token)")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    args = parser.parse_args(argv)
    from pathlib import Path

    from g2l.engine.pretrained import _REPO_ID, export_pretrained, push_to_hub

    if args.push_to_hub is not None and not _REPO_ID.fullmatch(args.push_to_hub):
        raise CliError(f"--push-to-hub {args.push_to_hub!r} is not a repo id; pass ORG/NAME")
    if args.floors is not None and not Path(args.floors).is_file():
        raise CliError(f"--floors file {args.floors} does not exist; pass the JSON that g2l-baselines --json wrote")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise CliError(f"{args.out_dir} exists and is not a folder; pass a folder path")
    try:
        folder = export_pretrained(args.checkpoint, out, floors=args.floors, name=args.name)
    except OSError as error:
        raise CliError(f"cannot write the folder {args.out_dir} ({error.strerror or error}); pass a folder you can "
                       "write to") from None
    print(f"wrote {folder}")
    if args.push_to_hub:
        print(f"uploaded to {push_to_hub(folder, args.push_to_hub, private=args.private)}")
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_export, argv)


def _app(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="The web app: upload a video or use the example, type queries, see the moments, the score map "
                    "and why. Example: g2l-app, then open http://127.0.0.1:7860",
    )
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint, an exported folder or a hub repo id (default: the shipped demo)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="the port (default 7860)")
    parser.add_argument("--top-k", type=int, default=5, help="moments per query (default 5)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frame-encoder", default=None, help="override the frame encoder to build (e.g. clip:<folder>)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        raise CliError(f"--port must be in 1..65535, got {args.port}")
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CliError("g2l-app needs Gradio, which is not installed; pip install 'g2l[app]'") from None
    from g2l.app import build_app, launch
    from g2l.assets import demo_checkpoint, demo_example
    from g2l.engine.distributed import resolve_device
    from g2l.inference import Grounder

    resolve_device(args.device, setting="--device")
    grounder = Grounder.from_pretrained(args.checkpoint or str(demo_checkpoint()), device=args.device,
                                        frame_encoder=args.frame_encoder)
    example_video, example_queries = demo_example()
    app = build_app(grounder, example_video=example_video, example_queries=example_queries, top_k=args.top_k)
    print(f"g2l-app: open http://{args.host}:{args.port} (Ctrl+C stops it)", file=sys.stderr)
    try:
        launch(app, host=args.host, port=args.port, example_video=example_video)
    except OSError as error:
        raise CliError(f"cannot serve on {args.host}:{args.port} ({str(error).splitlines()[0][:120]}); "
                       "pass another --port or --host") from None
    return 0


def app_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_app, argv)
