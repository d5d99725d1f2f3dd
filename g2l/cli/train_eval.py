"""Training and scoring: ``g2l-train``, ``g2l-eval`` and ``g2l-baselines``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from g2l.cli.common import (
    CliError,
    OneLineParser,
    check_writable,
    fraction,
    iou_list,
    module_installed,
    rank_list,
    require_extras,
    run_cli,
    write_json_atomic,
)


def _eval(argv: Sequence[str] | None) -> int:
    parser = OneLineParser(
        description="Score a predictions file (no model code), or evaluate a checkpoint on a split.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", help="a predictions file (JSON lines) to re-score")
    source.add_argument("--checkpoint", help="a checkpoint to evaluate (writes a predictions file)")
    parser.add_argument("--split", default=None, help="with --checkpoint: the split to evaluate (default: the config's eval split)")
    parser.add_argument("--nms", type=fraction, default=None, help="NMS threshold for score maps (default 0.5, or the checkpoint's)")
    parser.add_argument("--iou-thresholds", type=iou_list, default=None, help="e.g. 0.3,0.5,0.7")
    parser.add_argument("--recall-at", type=rank_list, default=None, help="e.g. 1,5")
    parser.add_argument("--json", dest="json_out", default=None, help="write the metrics as JSON here")
    parser.add_argument("--annotations", default=None,
                        help="with --predictions: a QVHighlights annotation file (highlight_val_release.jsonl) to "
                             "score against as Moment-DETR's standalone_eval does; the predictions may be a QVHighlights "
                             "submission")
    parser.add_argument("--out", default=None, help="with --checkpoint: where to write the predictions file")
    parser.add_argument("--dump-maps", action="store_true", help="with --checkpoint: add score maps to the predictions")
    parser.add_argument("--device", default="auto", help="with --checkpoint: cpu, cuda, or auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                        help="with --checkpoint: the forward pass's precision (default fp32, whatever the checkpoint was "
                             "trained in: the same metrics on every CPU); bf16 is faster where the hardware has it, and "
                             "its scores may differ from fp32 and with eval.batch_size")
    parser.add_argument("--corpus", action="store_true",
                        help="with --checkpoint: every query against every moment of every video of the split (corpus "
                             "R@k at IoU 0.5/0.7, video retrieval R@1/10, single-video metrics beside them, and the "
                             "match decision's AUROC, precision and recall)")
    parser.add_argument("--fit-match", default=None, metavar="OUT.pt",
                        help="with --checkpoint: fit the match threshold on the split (leave-one-video-out) and write "
                             "a copy of the checkpoint holding it to OUT.pt (a new file); implies --corpus")
    parser.add_argument("--fit-domain", default=None, metavar="OUT.pt",
                        help="with --checkpoint: summarise the features of the split (default: the config's train "
                             "split) and write a copy of the checkpoint holding the summary to OUT.pt (a new file), "
                             "so that grounding warns about videos unlike them (g2l/data/domain.py)")
    parser.add_argument("overrides", nargs="*", help="with --checkpoint: dotted config overrides (data.features=...)")
    args = parser.parse_args(argv)
    if args.fit_domain:
        return _fit_domain(args)
    check_writable(args.json_out, "--json")
    check_writable(args.out, "--out")
    if args.corpus or args.fit_match:
        if not args.checkpoint:
            raise CliError("--corpus and --fit-match evaluate a model: pass --checkpoint")
        if args.out or args.dump_maps or args.annotations or args.iou_thresholds or args.recall_at:
            raise CliError("--corpus writes no predictions file and uses the corpus ranks and thresholds; drop --out, "
                           "--dump-maps, --annotations, --iou-thresholds and --recall-at")
        return _eval_corpus(args)

    from g2l.eval.metrics import format_metrics_table

    if args.predictions:
        if args.overrides:
            raise CliError("config overrides only apply with --checkpoint")
        iou_thresholds = args.iou_thresholds or [0.3, 0.5, 0.7]
        recall_at = args.recall_at or [1, 5]
        metrics = _rescore(args.predictions, args.annotations, 0.5 if args.nms is None else args.nms, recall_at,
                           iou_thresholds)
    else:
        from g2l.engine.distributed import resolve_device
        from g2l.eval.evaluator import evaluate_checkpoint

        if args.annotations:
            raise CliError("--annotations goes with --predictions; with --checkpoint a QVHighlights split is scored "
                           "against its own annotation file")
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
            precision=args.precision,
        )
        metrics, iou_thresholds, recall_at = result.metrics, result.iou_thresholds, result.recall_at
        print(f"predictions written to {result.predictions_path}", file=sys.stderr)
        if result.submission_path:
            print(f"QVHighlights submission written to {result.submission_path}", file=sys.stderr)
    print(format_metrics_table(metrics, recall_at, iou_thresholds))
    if "MR-full-mAP" in metrics:
        from g2l.eval.qvhighlights import format_qvhighlights_table

        print(format_qvhighlights_table(metrics))
    if args.json_out:
        write_json_atomic(args.json_out, metrics)
    return 0


def _fit_domain(args) -> int:
    """``g2l-eval --checkpoint C --fit-domain OUT.pt [--split S] [overrides]``: g2l/data/domain.py."""
    from pathlib import Path

    from g2l.config import ConfigError, apply_overrides, config_from_dict
    from g2l.data.dataset import build_dataset
    from g2l.data.domain import fit_dataset_summary
    from g2l.io.checkpoint import CheckpointError, save_payload
    from g2l.models.checkpoint import check_untrusted_fields
    from g2l.models.checkpoint import load_model_source

    if not args.checkpoint:
        raise CliError("--fit-domain summarises a model's training features: pass --checkpoint")
    check_writable(args.fit_domain, "--fit-domain")
    if Path(args.fit_domain).exists() or Path(args.fit_domain).is_symlink():
        raise CliError(f"--fit-domain {args.fit_domain} exists; pass a new file for the checkpoint copy")
    payload, source = load_model_source(args.checkpoint)
    try:
        cfg = config_from_dict(payload["config"])
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {source} holds a config this version cannot read ({error})") from None
    apply_overrides(cfg, args.overrides)
    split = args.split or cfg.data.train_split
    dataset, report = build_dataset(cfg.data, split, cfg.model.num_clips)
    print(report, file=sys.stderr)
    summary = fit_dataset_summary(dataset)
    check_untrusted_fields({**payload, "domain": summary}, source)
    save_payload(args.fit_domain, {**payload, "domain": summary})
    print(f"checkpoint with the domain summary of {summary['num_videos']} {split} videos written to {args.fit_domain}: "
          f"distances {summary['quantiles']}, a video is flagged beyond {summary['threshold']:.3f}", file=sys.stderr)
    return 0


def _eval_corpus(args) -> int:
    """``g2l-eval --checkpoint C --corpus`` (and ``--fit-match OUT.pt``): g2l/eval/corpus.py, g2l/eval/match.py."""
    from pathlib import Path

    from g2l.engine.distributed import resolve_device
    from g2l.eval.corpus import corpus_checkpoint, format_corpus_table
    from g2l.eval.match import auroc, decides, decision_note, fit_threshold, precision_recall
    from g2l.io.checkpoint import save_payload

    if args.fit_match:
        check_writable(args.fit_match, "--fit-match")
        if Path(args.fit_match).exists() or Path(args.fit_match).is_symlink():
            raise CliError(f"--fit-match {args.fit_match} exists; pass a new file for the checkpoint copy")
    resolve_device(args.device, setting="--device")
    result, split, payload = corpus_checkpoint(args.checkpoint, split=args.split, overrides=args.overrides,
                                               device=args.device, nms_thresh=args.nms)
    metrics = dict(result.metrics)
    metrics["match_auroc"] = auroc(result.present, result.absent[result.absent > float("-inf")])
    match = payload.get("match")
    if args.fit_match:
        match = fit_threshold(result.present, result.absent, fitted_on=f"{split} split (leave-one-video-out)").as_dict()
        save_payload(args.fit_match, {**payload, "match": match})
        print(f"checkpoint with its match threshold written to {args.fit_match}", file=sys.stderr)
        if not decides(match):
            print(f"note: on this split the best score hardly tells a library holding the answer from one without it "
                  f"(AUROC {100 * match['auroc']:.1f}); the fit is stored for the record{decision_note(match)}",
                  file=sys.stderr)
    print(format_corpus_table(metrics))
    print(f"match: AUROC {100 * metrics['match_auroc']:.2f} of the best score with the query's own video in the "
          "library against without it")
    if match:
        precision, recall = precision_recall(result.present, result.absent, match["threshold"])
        metrics.update(match_threshold=match["threshold"], match_precision=precision, match_recall=recall)
        print(f"       threshold {match['threshold']:.4f} ({match.get('fitted_on', 'fitted')}): precision "
              f"{100 * precision:.2f}, recall {100 * recall:.2f} on this split" + decision_note(match))
    else:
        print("       this model has no match threshold (fit one with --fit-match OUT.pt)")
    if args.json_out:
        write_json_atomic(args.json_out, metrics)
    return 0


def _rescore(path: str, annotations: str | None, nms_thresh: float, recall_at, iou_thresholds) -> dict:
    """Metrics of a predictions file; with ``annotations``, QVHighlights' too (a submission file needs them)."""
    from g2l.eval import qvhighlights as qvh
    from g2l.eval.metrics import grounding_metrics
    from g2l.eval.predictions import read_predictions, rescore_predictions

    if not qvh.is_submission(path):
        predictions = read_predictions(path)
        metrics = rescore_predictions(predictions, nms_thresh, recall_at, iou_thresholds)
        if annotations:
            truths = qvh.read_ground_truth(annotations)
            metrics.update(qvh.qvhighlights_metrics(qvh.submission_from_predictions(predictions, truths, nms_thresh),
                                                    truths, require_all=False))
            metrics["qvhighlights_split_queries"] = len(truths)
        return metrics
    if not annotations:
        raise CliError(f"{path} is a QVHighlights submission; pass --annotations with the split's annotation file "
                       "(highlight_val_release.jsonl) to score it")
    entries, truths = qvh.read_submission(path), qvh.read_ground_truth(annotations)
    metrics = qvh.qvhighlights_metrics(entries, truths)  # checks the qids first
    by_qid = {t.qid: t for t in truths}
    metrics.update(grounding_metrics([e.windows[:, :2] for e in entries], [by_qid[e.qid].windows_s for e in entries],
                                     recall_at, iou_thresholds))
    return metrics


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
    require_extras("g2l-train", "transformers", "numba")  # the text encoder and the kernels
    overrides = list(args.overrides) + ([f"log.wandb={args.wandb}"] if args.wandb else [])
    from g2l.config import load_config
    from g2l.train import train

    if args.resume:
        if args.config:
            raise CliError("--resume takes its config from the run folder; drop --config (overrides are allowed)")
        _check_wandb_installed(args.wandb or _resumed_wandb_mode(args.resume, overrides))
        result = train(resume_dir=args.resume, overrides=overrides)
    else:
        if not args.config:
            raise CliError("pass --config configs/<dataset>.yaml (or --resume RUN_DIR)")
        cfg = load_config(args.config, overrides)
        _check_wandb_installed(cfg.log.wandb)
        result = train(cfg)
    best = result.best
    if best:
        shown = "  ".join(f"{k} {100 * v:.2f}" for k, v in best.items() if k.startswith("R1@") or k == "mIoU")
        print(f"best epoch {best.get('epoch')}: {shown}")
    print(f"run folder: {result.run_dir}")
    return 0


def _check_wandb_installed(mode: str | None) -> None:
    """W&B logging asked for (any ``log.wandb`` but ``off``) needs wandb; refused before training."""
    if mode not in (None, "off") and not module_installed("wandb"):
        raise CliError(f"log.wandb is '{mode}' (W&B logging) but wandb is not installed; pip install 'g2l[train]', "
                       "or pass --wandb off")


def _resumed_wandb_mode(run_dir: str, overrides: list[str]) -> str | None:
    """``log.wandb`` of the run to resume (its config.yaml with the overrides); None when that
    cannot be read, which ``train`` then reports."""
    from pathlib import Path

    from g2l.config import load_config
    from g2l.errors import G2LError

    path = Path(run_dir) / "config.yaml"
    try:
        return load_config(str(path), overrides).log.wandb if path.is_file() else None
    except (G2LError, OSError):
        return None


def train_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_train, argv)


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
        write_json_atomic(args.json_out, {"prior_only": prior, "random": random})
    return 0


def baselines_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_baselines, argv)
