"""Sharing a model: ``g2l-export`` writes a checkpoint as a Hugging Face layout folder (and may
upload it)."""

from __future__ import annotations

from collections.abc import Sequence

from g2l.cli.common import CliError, OneLineParser, run_cli


def _export(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Write a checkpoint as a Hugging Face layout folder (model.safetensors, config.json, tokenizer "
                    "files, frame_encoder.json, a README.md model card) that Grounder.from_pretrained and "
                    "--checkpoint load. Example: g2l-export runs/my-run/checkpoints/best.pt my-model",
    )
    parser.add_argument("checkpoint", help="a g2l checkpoint (or an exported folder, or a hub repo id)")
    parser.add_argument("out_dir", help="the folder to write (created; an earlier export there is replaced whole, "
                                        "once the new one is complete)")
    parser.add_argument("--floors", default=None, metavar="FLOORS.json",
                        help="the JSON of g2l-baselines --json, shown beside the metrics in the model card")
    parser.add_argument("--name", default=None, help="the model card's title (default: the folder's name)")
    parser.add_argument("--push-to-hub", default=None, metavar="ORG/NAME",
                        help="then upload the folder to this Hugging Face repo (created if missing; needs a token)")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    args = parser.parse_args(argv)
    from pathlib import Path

    from g2l.hub import export_pretrained, push_to_hub
    from g2l.io.pretrained import REPO_ID

    if args.push_to_hub is not None and not REPO_ID.fullmatch(args.push_to_hub):
        raise CliError(f"--push-to-hub {args.push_to_hub!r} is not a repo id; pass ORG/NAME")
    if args.floors is not None and not Path(args.floors).is_file():
        raise CliError(f"--floors file {args.floors} does not exist; pass the JSON that g2l-baselines --json wrote")
    out = Path(args.out_dir)  # export_pretrained refuses a file there, or a folder of other files, first
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
