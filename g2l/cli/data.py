"""Making data: ``g2l-extract`` (video features), ``g2l-make-synthetic`` (the built-in benchmark)
and ``g2l-real-stats`` (the statistics of the real benchmarks that the generator copies)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from g2l.cli.common import CliError, OneLineParser, require_extras, run_cli, terminal_progress

RELEASE_NAMES = ("qvhighlights_clip", "qvhighlights_slowfast")  # g2l.video.frame_encoders.RELEASE_SPECS (not imported: torch)


def _extract(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Extract per-frame features of videos into an HDF5 file (f[video_id] -> (T, d) float32). "
                    "Example: g2l-extract videos/ --out features.hdf5 --encoder mobilenet_v2 --fps 1",
    )
    parser.add_argument("videos", nargs="+", help="video files, folders of videos, or .txt files listing video paths "
                                                  "(with --declare: the folders of downloaded features)")
    parser.add_argument("--out", help="output .hdf5 file (created, or resumed when it exists)")
    parser.add_argument("--encoder", default="mobilenet_v2",
                        help="'mobilenet_v2' (default), 'mobilenet_v2_grid2', 'clip:<hub name or folder>' or "
                             "'clip_release:<hub name or folder>' (the sampling and preprocessing of the public CLIP "
                             "features, e.g. clip_release:openai/clip-vit-base-patch32 for QVHighlights)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frames sampled per second (default 1; clip_release: one per --clip-len)")
    parser.add_argument("--clip-len", type=float, default=2.0,
                        help="clip_release only: seconds per feature row (default 2, as QVHighlights)")
    parser.add_argument("--declare", metavar="RELEASE", choices=sorted(RELEASE_NAMES),
                        help="extract nothing: declare that the given feature folders hold the public release "
                             f"RELEASE ({', '.join(sorted(RELEASE_NAMES))}), so models trained on them record "
                             "its frame encoder")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per encoder batch (default 32)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    parser.add_argument("--quiet", "--no-progress", action="store_true",
                        help="no progress bar (it is drawn on stderr, and only on a terminal)")
    args = parser.parse_args(argv)
    if args.declare:
        from g2l.video.feature_extraction import declare_release

        for folder in args.videos:
            print(f"declared {args.declare} in {declare_release(folder, args.declare)}", file=sys.stderr)
        return 0
    if not args.out:
        parser.error("--out is required (the .hdf5 file to write)")
    if args.fps is not None and not args.fps > 0:
        parser.error(f"--fps must be positive, got {args.fps}")
    if args.fps is not None and args.encoder.startswith("clip_release:"):
        parser.error("--fps does not apply to a clip_release encoder, which samples one frame per --clip-len seconds")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.encoder.startswith("clip:"):
        require_extras("g2l-extract --encoder clip:...", "transformers")
    if args.encoder.startswith("clip_release:"):
        require_extras("g2l-extract --encoder clip_release:...", "transformers", "av")
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
    options = {"clip_len_s": args.clip_len} if args.encoder.startswith("clip_release:") else {}
    encoder = build_frame_encoder(args.encoder, device=device, **options)
    with terminal_progress(f"extracting {len(videos)} video{'s' if len(videos) != 1 else ''}", quiet=args.quiet) as update:
        report = extract_features_to_hdf5(videos, args.out, encoder, fps=args.fps, batch_size=args.batch_size,
                                          progress=update)
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
    from g2l.synthetic.benchmark import PRESETS, SIZES, format_bytes, generate_synthetic

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

    def announce(estimate: int) -> None:  # before anything is written
        print(f"writing {args.preset} (seed {args.seed}) to {args.out}: about {format_bytes(estimate)}", flush=True)

    began = time.perf_counter()
    try:
        out = generate_synthetic(args.out, args.preset, args.seed, args.size, args.num_train, args.num_val,
                                 args.num_test, feature_key=args.feature_key, sparse_annotation=args.sparse_annotation,
                                 progress=not args.quiet, on_estimate=announce)
    except OSError as error:
        raise CliError(f"cannot write the benchmark to {args.out} ({error})") from None
    print(f"wrote {args.preset} (seed {args.seed}) to {out} in {time.perf_counter() - began:.1f} s")
    return 0


def make_synthetic_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_make_synthetic, argv)


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
