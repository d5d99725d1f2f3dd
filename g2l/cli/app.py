"""The web app's command: ``g2l-app`` checks its arguments, loads the model and serves
``g2l.app``'s page until it is stopped."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from g2l.cli.common import CliError, OneLineParser, require_extras, run_cli


def _app(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="The web app: upload a video or use the example, type queries, see the moments, the score map "
                    "and why; or search a library of videos (g2l-index) in its Library tab. Example: g2l-app, then "
                    "open http://127.0.0.1:7860",
    )
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint, an exported folder or a hub repo id (default: the shipped demo)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="the port (default 7860)")
    parser.add_argument("--top-k", type=int, default=5, help="moments per query (default 5)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frame-encoder", default=None, help="override the frame encoder to build (e.g. clip:<folder>)")
    parser.add_argument("--max-video-min", type=float, default=20.0,
                        help="refuse uploaded videos longer than this many minutes (default 20)")
    parser.add_argument("--max-queries", type=int, default=20, help="the most query lines per request (default 20)")
    parser.add_argument("--max-upload-mb", type=float, default=500.0,
                        help="refuse uploads larger than this many megabytes (default 500)")
    parser.add_argument("--index", default=None, metavar="FOLDER",
                        help="an index made by g2l-index build (with the same model), opened in the Library tab at start")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="requests worked on at once; the others wait in a queue that shows their place (default 1)")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.max_video_min) and args.max_video_min > 0):
        raise CliError(f"--max-video-min must be a positive number of minutes, got {args.max_video_min}")
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):
        raise CliError(f"--max-upload-mb must be a positive number of megabytes, got {args.max_upload_mb}")
    if args.max_queries < 1 or args.concurrency < 1:
        raise CliError("--max-queries and --concurrency must be at least 1")
    if not 0 < args.port < 65536:
        raise CliError(f"--port must be in 1..65535, got {args.port}")
    if args.top_k < 1:
        raise CliError("--top-k must be at least 1")
    require_extras("g2l-app", "gradio", "av")  # the server; PyAV reads a video's frame size without decoding it
    from g2l.app import build_app, launch, sigterm_as_interrupt
    from g2l.assets import demo_checkpoint, demo_example
    from g2l.engine.distributed import resolve_device
    from g2l.inference import Grounder

    resolve_device(args.device, setting="--device")
    with sigterm_as_interrupt():  # SIGTERM unwinds like Ctrl+C: the app's temporary folder is removed
        grounder = Grounder.from_pretrained(args.checkpoint or str(demo_checkpoint()), device=args.device,
                                            frame_encoder=args.frame_encoder)
        example_video, example_queries = demo_example()
        app = build_app(grounder, example_video=example_video, example_queries=example_queries, top_k=args.top_k,
                        max_video_s=60 * args.max_video_min, max_queries=args.max_queries,
                        max_upload_mb=args.max_upload_mb, concurrency=args.concurrency,
                        library_index=args.index)
        print(f"g2l-app: open http://{args.host}:{args.port} (Ctrl+C stops it)", file=sys.stderr)
        try:
            launch(app, host=args.host, port=args.port, example_video=example_video)
        except OSError as error:
            raise CliError(f"cannot serve on {args.host}:{args.port} ({str(error).splitlines()[0][:120]}); "
                           "pass another --port or --host") from None
    return 0


def app_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_app, argv)
