"""Search a video library: ``g2l-index`` (build, add, remove, info, verify an index folder) and
``g2l-search`` (the best moments of sentences across every video of an index); g2l/library."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from g2l.cli.common import CliError, OneLineParser, run_cli, terminal_progress
from g2l.errors import path_problem
from g2l.io import strict_json


def _model_options(parser) -> None:
    parser.add_argument("--checkpoint", default=None, metavar="PATH_OR_REPO",
                        help="the model (a checkpoint, an exported folder or a hub repo id; default: the demo "
                             "checkpoint shipped with g2l); an index is searched with the model it was built with")
    parser.add_argument("--device", default="auto",
                        help='"auto" (default: the first CUDA GPU if there is one, else the CPU), "cpu", "cuda"')
    parser.add_argument("--frame-encoder", default=None, help="override the frame encoder to build (e.g. clip:<folder>)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="forward pass precision")


def _load_grounder(args):
    from g2l.cli.ground import _load_grounder as load

    return load(args)


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Video files, folders (their video files, recursively, sorted) and ``@list.txt`` (one path a
    line, relative to the list's folder; blank lines and ``#`` comments skipped), in order, each once."""
    from g2l.io.safe_files import read_text_file
    from g2l.video.decoding import is_video_file

    found: list[Path] = []
    for raw in inputs:
        if raw.startswith("@"):
            listing = Path(raw[1:])
            problem = path_problem(listing)
            if problem:
                raise CliError(f"list {listing} {problem}; pass @FILE with one video path a line")
            try:
                text = read_text_file(listing, what=f"list {listing}", max_bytes=64 << 20)
            except (OSError, ValueError) as error:
                raise CliError(f"list {listing} cannot be read ({str(error)[:120]}); pass a text file of paths") from None
            for line in text.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    found.append(Path(line) if Path(line).is_absolute() else listing.parent / line)
            continue
        path = Path(raw)
        if path.is_dir():
            videos = sorted(p for p in path.rglob("*") if p.is_file() and is_video_file(p))
            if not videos:
                raise CliError(f"folder {path} holds no video file; pass video files, folders of them or @list.txt")
            found += videos
        else:
            found.append(path)  # a missing or unreadable one is reported and skipped when it is encoded
    seen, unique = set(), []
    for path in found:
        if str(path) not in seen:
            seen.add(str(path))
            unique.append(path)
    return unique


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _index(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Build and keep an index of videos for g2l-search. Example: g2l-index build lib/ videos/ "
                    "then g2l-search lib/ \"the red circle grows\".")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser, metavar="COMMAND")
    build = commands.add_parser("build", help="create an index (or add to it) from videos, folders, @list.txt, or a "
                                              "benchmark split's features (--config --split)")
    build.add_argument("index", help="the index folder (created)")
    build.add_argument("inputs", nargs="*", help="video files, folders (searched recursively) or @list.txt")
    build.add_argument("--config", action="append", default=None,
                       help="with --split: the data config the model was trained with (the split's feature file)")
    build.add_argument("--split", default=None, help="with --config: index this split's videos from their features")
    build.add_argument("--window", type=float, default=None, metavar="SECONDS",
                       help="encode long videos in overlapping windows of this length (as g2l-ground --window)")
    build.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                       help="storage of the moment features (default float16: half the size, scores within about 1e-3)")
    add = commands.add_parser("add", help="add videos to an index (unchanged ones already there are skipped)")
    add.add_argument("index")
    add.add_argument("inputs", nargs="+", help="video files, folders (recursively) or @list.txt")
    for sub in (build, add):
        _model_options(sub)
        sub.add_argument("--cache", default=None, metavar="DIR",
                         help="the frame-feature cache of g2l-ground --batch: cached videos are not decoded again")
        sub.add_argument("--commit-every", type=int, default=256, metavar="N",
                         help="write the index every N videos (one shard each; default 256): a stopped run loses at "
                              "most N, and running the same command again resumes")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.add_argument("--approximate", action="store_true",
                         help="then (re)build the index's approximate FAISS index, as g2l-index approximate does "
                              "(needs pip install 'g2l[library]')")
    approximate = commands.add_parser("approximate", help="build (or rebuild) the FAISS index that g2l-search uses "
                                                          "for large libraries (needs pip install 'g2l[library]')")
    approximate.add_argument("index")
    milvus = commands.add_parser("milvus", help="export the index's moments into a Milvus collection, which g2l-search "
                                                "--milvus searches (default: a Milvus Lite file INDEX/milvus.db, no "
                                                "server; needs pip install 'g2l[milvus]')")
    milvus.add_argument("index")
    milvus.add_argument("--uri", default=None, help="a Milvus server (http://host:19530) or a Milvus Lite file (*.db; "
                                                    "default INDEX/milvus.db)")
    milvus.add_argument("--collection", default=None, help="the collection's name (default g2l_moments)")
    milvus.add_argument("--replace", action="store_true", help="overwrite a collection of that name that another "
                                                               "index (or program) wrote")
    milvus.add_argument("--quiet", action="store_true", help="no progress bar")
    remove = commands.add_parser("remove", help="drop videos from an index")
    remove.add_argument("index")
    remove.add_argument("videos", nargs="+", help="the videos, by the path they were indexed under")
    info = commands.add_parser("info", help="what an index holds")
    info.add_argument("index")
    info.add_argument("--json", action="store_true", help="print JSON")
    verify = commands.add_parser("verify", help="find changed, moved and missing videos (and damaged shards)")
    verify.add_argument("index")
    verify.add_argument("--fix", action="store_true", help="encode changed videos again, follow moved ones, drop "
                                                          "missing ones")
    _model_options(verify)
    verify.add_argument("--cache", default=None, metavar="DIR", help="with --fix: the frame-feature cache")
    args = parser.parse_args(argv)
    from g2l.library import VideoIndex

    if args.command == "info":
        index = VideoIndex.open(args.index)
        summary = index.info()
        if args.json:
            print(strict_json.dumps(summary))
        else:
            print(f"{summary['index']}: {summary['videos']} videos ({summary['hours']:.2f} h), {summary['moments']} "
                  f"moments in {summary['shards']} shards, {summary['bytes'] / 1e6:.1f} MB ({summary['dtype']}, "
                  f"width {summary['dim']}, window {summary['window_s'] or 'none'})")
            print(f"model: weights sha256 {summary['model'].get('weights_sha256', '?')[:16]}..., frame encoder "
                  f"{(summary['model'].get('frame_encoder') or {}).get('name')}")
            print(f"approximate index: {summary['approximate']}")
            print(f"milvus export: {summary['milvus']}")
        return 0
    if args.command == "remove":
        with VideoIndex.open(args.index, write=True) as index:
            removed, not_found = index.remove(args.videos)
        for path in not_found:
            print(f"warning: {printable(path)} is not in the index", file=sys.stderr)
        print(f"removed {_count(len(removed), 'video')}; {len(index.videos)} left")
        return 0 if removed or not not_found else 1
    if args.command == "verify":
        return _verify(args)
    if args.command == "approximate":
        _require_backend(True)  # before the lock and any work
        with VideoIndex.open(args.index, write=True) as index:
            _build_approximate(index, args.index)
        return 0
    if args.command == "milvus":
        return _export_milvus(args)
    return _build_or_add(args)


def _export_milvus(args) -> int:
    import time

    from g2l.library import VideoIndex
    from g2l.library.milvus import export

    _require_backend("milvus")  # before the lock and any work
    started = time.perf_counter()
    with VideoIndex.open(args.index, write=True) as index:
        with terminal_progress("moments", quiet=args.quiet, total=sum(v.cells for v in index.videos),
                               unit="moment") as update:
            record = export(index, uri=args.uri, collection=args.collection, replace=args.replace,
                            on_batch=lambda done, total: update(done))
    print(f"g2l-index milvus: {record['moments']} moments in collection {record['collection']} at {record['uri']} "
          f"({record['index_type']}, nlist {record['nlist']}) in {time.perf_counter() - started:.1f} s; "
          f"g2l-search {args.index} --milvus uses it", file=sys.stderr)
    return 0


def _require_backend(approximate) -> None:
    """The library a search backend needs (``approximate``: True, FAISS; "milvus", pymilvus), or
    the sentence naming the extra that installs it; nothing for exact search."""
    if approximate == "milvus":
        from g2l.library.milvus import import_pymilvus

        import_pymilvus()
    elif approximate:
        from g2l.library.approximate import import_faiss

        import_faiss()


def _build_approximate(index, folder: str) -> None:
    import time

    started = time.perf_counter()
    record = index.build_approximate()
    print(f"g2l-index approximate: {record['moments']} moments in {record['factory']} ({record['bytes'] / 1e6:.1f} MB) "
          f"in {time.perf_counter() - started:.1f} s; g2l-search {folder} uses it above "
          f"{APPROXIMATE_ABOVE_TEXT} moments, or with --approximate", file=sys.stderr)


def _build_or_add(args) -> int:
    from g2l.library import VideoIndex

    from_split = args.command == "build" and (args.config or args.split)
    if from_split:
        if not (args.config and args.split and args.checkpoint):
            raise CliError("indexing a split needs --checkpoint, --config and --split together")
        if args.inputs:
            raise CliError("--config --split indexes the split's videos; pass no video arguments with them")
    elif not args.inputs:
        raise CliError("pass videos, folders or @list.txt to index")
    if args.approximate:
        _require_backend(True)  # before any work
    if args.commit_every < 1:
        raise CliError("--commit-every must be at least 1")
    videos = [] if from_split else expand_inputs(args.inputs)
    if args.cache is not None:
        from g2l.feature_cache import usable_folder

        args.cache = usable_folder(args.cache)
    grounder = _load_grounder(args)
    if args.command == "build":
        index = VideoIndex.create(args.index, grounder, window_s=args.window, dtype=args.dtype)
    else:
        index = VideoIndex.open(args.index, grounder, write=True)
    with index:
        if from_split:
            return _index_split(args, index, grounder)

        def failed(path: str, why: str) -> None:
            print(f"skipped {printable(path)}: {why}", file=sys.stderr)

        with terminal_progress("videos", quiet=args.quiet, total=len(videos), unit="video") as update:
            summary = index.add(videos, grounder, cache_dir=args.cache, on_failure=failed,
                                videos_per_shard=args.commit_every,
                                on_video=lambda done, total: update(done))
        print(f"g2l-index {args.command}: {_count(len(summary.added), 'video')} added ({summary.from_cache} from the cache), "
              f"{len(summary.skipped)} already indexed, {len(summary.failed)} failed; {len(index.videos)} in "
              f"{args.index}", file=sys.stderr)
        if args.approximate and index.videos:
            _build_approximate(index, args.index)
    return 1 if summary.failed and not summary.added and not summary.skipped else 0


def _index_split(args, index, grounder) -> int:
    from g2l.config import load_config
    from g2l.data.annotations import group_by_video, load_annotations
    from g2l.data.features import VideoFeatures

    cfg = load_config(args.config)
    data = cfg.data
    path = getattr(data, f"{args.split}_annotations", None)
    if not path:
        raise CliError(f"the config sets no data.{args.split}_annotations; pass --split train, val or test")
    annotations, _ = load_annotations(Path(path), data.annotation_format or None,
                                      durations_csv=data.durations_csv or None)
    groups = group_by_video(annotations)
    features = VideoFeatures(data.features, data.feature_key, data.num_pre_clips)

    def items():
        for video_id, records in groups.items():
            yield video_id, features.load(video_id), records[0].duration_s

    with terminal_progress("videos", quiet=args.quiet, total=len(groups), unit="video") as update:
        count = index.add_features(items(), grounder, on_video=update, videos_per_shard=args.commit_every)
    features.close()
    if args.approximate and index.videos:
        _build_approximate(index, args.index)
    print(f"g2l-index build: {count} videos of the {args.split} split indexed; {len(index.videos)} in {args.index}",
          file=sys.stderr)
    return 0


def _verify(args) -> int:
    from g2l.library import VideoIndex

    grounder = _load_grounder(args) if args.fix else None
    index = VideoIndex.open(args.index, grounder, write=args.fix)
    with index:
        report = index.verify(grounder, fix=args.fix, cache_dir=args.cache,
                              on_failure=lambda path, why: print(f"skipped {printable(path)}: {why}", file=sys.stderr))
    for path in report.changed:
        print(f"changed: {printable(path)}")
    for path, now in report.moved:
        print(f"moved: {printable(path)} -> {printable(now)}")
    for path in report.missing:
        print(f"missing: {printable(path)}")
    for path in report.damaged:
        print(f"damaged: {printable(path)}")
    for line in report.fixed:
        print(f"fixed: {line}")
    print(f"{len(report.ok)} videos unchanged, {len(report.changed)} changed, {len(report.moved)} moved, "
          f"{len(report.missing)} missing, {len(report.damaged)} damaged shard files"
          + (f", {report.unchecked} from features (not checked)" if report.unchecked else ""), file=sys.stderr)
    problems = report.changed or report.moved or report.missing or report.damaged
    return 0 if args.fix or not problems else 1


def _search(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description='Find moments across every video of an index. Example: g2l-search lib/ "the red circle grows" '
                    "--top-k 10 --per-video 2")
    parser.add_argument("index", help="an index folder made by g2l-index build")
    parser.add_argument("queries", nargs="+", help="one or more sentences, each quoted")
    parser.add_argument("--top-k", type=int, default=10, help="moments per query (default 10)")
    parser.add_argument("--per-video", type=int, default=None, metavar="N",
                        help="at most N moments of one video (default: no limit beyond NMS within each video)")
    parser.add_argument("--json", action="store_true", help='one JSON object per query: {"query", "match", "moments"}')
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--exact", dest="approximate", action="store_false", default=None,
                     help="score every stored moment (the default below " + APPROXIMATE_ABOVE_TEXT + " moments)")
    how.add_argument("--approximate", dest="approximate", action="store_true",
                     help="fetch candidates from the index's FAISS index (g2l-index approximate) and score those "
                          "exactly (the default above " + APPROXIMATE_ABOVE_TEXT + " moments when it is current)")
    how.add_argument("--milvus", dest="approximate", action="store_const", const="milvus",
                     help="fetch candidates and their features from the index's Milvus collection (g2l-index milvus) "
                          "and score those exactly")
    _model_options(parser)
    args = parser.parse_args(argv)
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1")
    if args.per_video is not None and args.per_video < 1:
        raise CliError("--per-video must be at least 1")
    from g2l.inference import check_queries
    from g2l.library import VideoIndex

    check_queries(args.queries)
    _require_backend(args.approximate)  # before any work
    index = VideoIndex.open(args.index)  # the folder is checked before the model loads
    grounder = _load_grounder(args)
    results = index.search(grounder, args.queries, top_k=args.top_k, per_video=args.per_video,
                           approximate=args.approximate)
    for result in results:
        if args.json:
            print(strict_json.dumps({"query": result.query, "match": result.match, "moments": [
                {"video": m.video, "start": m.start_s, "end": m.end_s, "score": m.score}
                for m in result.moments]}))
            continue
        verdict = "" if result.match is None else ("  (match)" if result.match else "  (no match in this library)")
        print(f"\n  {result.query}{verdict}")
        print(f"    {'rank':>4}  {'start_s':>8}  {'end_s':>8}  {'score':>6}  video")
        for rank, m in enumerate(result.moments, start=1):
            print(f"    {rank:>4}  {m.start_s:>8.2f}  {m.end_s:>8.2f}  {m.score:>6.3f}  {printable(m.video)}")
    return 0


APPROXIMATE_ABOVE_TEXT = "2,000,000"  # g2l.library.approximate.APPROXIMATE_ABOVE, without importing it at startup


def index_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_index, argv)


def search_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_search, argv)


def printable(text: str) -> str:
    """``text`` for a terminal: control characters (an escape sequence planted in an indexed path
    could retitle or rewrite the terminal) shown as Python escapes; ``--json`` keeps them as JSON does."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
