"""Run a model over a split: score maps -> ranked candidates -> metrics and a predictions file.

In a multi-process run each rank takes whole batches (batch n goes to rank n % world), so every
batch is exactly the batch a single process would form; the per-query results are gathered and
put back in dataset order, and the metrics equal the single-process metrics exactly.

Evaluation runs in float32 unless a caller passes another ``autocast_dtype`` (``evaluate_checkpoint``'s
``precision``; g2l/engine/precision.py says why): a checkpoint trained in bf16 is still scored in
float32, so its metrics do not depend on the CPU, and a query's scores move with
``eval.batch_size`` by float32 rounding only (within 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from g2l.data.dataset import Collate, GroundingDataset, loader_workers
from g2l.engine.precision import GROUNDING_PRECISION, autocast
from g2l.eval.metrics import grounding_metrics
from g2l.eval.predictions import Prediction, PredictionsError, write_predictions
from g2l.eval.qvhighlights import highlight_curve, qvhighlights_annotations, reads_qvhighlights, score_split
from g2l.io.atomic import unwritable_reason
from g2l.models.grounding import score_cells
from g2l.ops.spans import cells_to_spans, rank_moments


@dataclass
class EvalResult:
    metrics: dict
    predictions: list[Prediction]
    iou_thresholds: list[float]
    recall_at: list[int]
    predictions_path: Path | None = None
    submission_path: Path | None = None  # QVHighlights: the predictions in its submission layout


def _batches_for_rank(num_items: int, batch_size: int, rank: int, world_size: int) -> list[list[int]]:
    batches = [list(range(s, min(s + batch_size, num_items))) for s in range(0, num_items, batch_size)]
    return batches[rank::world_size]


@torch.inference_mode()
def predict(
    model,
    dataset: GroundingDataset,
    *,
    device: torch.device,
    batch_size: int,
    score_gamma: float,
    nms_thresh: float,
    num_candidates: int,
    keep_maps: int | bool = False,
    highlights: bool = False,
    max_tokens: int = 64,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> list[Prediction]:
    """Predictions for every query of ``dataset`` in dataset order (all ranks get the full list).

    ``keep_maps``: True keeps every query's score map; an int keeps the first that many.
    ``highlights``: give every query a highlight curve from its map (``Prediction.saliency``).
    """
    from g2l.engine.distributed import gather_objects, rank_and_world

    rank, world = rank_and_world()
    was_training = model.training
    model.eval()
    collate = Collate(model.tokenizer, max_tokens)
    indices = [i for batch in _batches_for_rank(len(dataset), batch_size, rank, world) for i in batch]
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, collate_fn=collate,
                        num_workers=num_workers, pin_memory=torch.device(device).type == "cuda")
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="evaluate", leave=False, dynamic_ncols=True)
    start_idx, end_idx = model.cell_start_idx.cpu().numpy(), model.cell_end_idx.cpu().numpy()  # (C,) row-major
    results: list[tuple[int, list[Prediction]]] = []
    position = 0
    for batch in loader:
        batch = batch.to(device, non_blocking=True)
        context = autocast(autocast_dtype, device, exact=True)
        with context:
            output = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
        cell_scores = score_cells(output.contrast_cos, output.iou_cos, score_gamma).float()  # (q C)
        maps = model.to_map(cell_scores).cpu().numpy()  # (q t t), 0 off the mask
        cell_scores = cell_scores.cpu().numpy()
        video_of = batch.sentence_video.cpu().numpy()
        durations = batch.durations_s.cpu().numpy()
        per_video: dict[int, list[Prediction]] = {}
        spans = [cells_to_spans(start_idx, end_idx, float(d), model.num_clips) for d in durations]  # per video (C 2)
        for q in range(cell_scores.shape[0]):
            b = int(video_of[q])
            duration = float(durations[b])
            ranked = rank_moments(cell_scores[q], spans[b], nms_thresh, num_candidates)
            per_video.setdefault(b, []).append(
                Prediction(
                    video=batch.video_ids[b], query=batch.sentences[q], duration=duration, gt=batch.gt_windows[q],
                    candidates=np.concatenate([ranked.spans, ranked.scores[:, None]], axis=1), score_map=maps[q],
                    saliency=highlight_curve(maps[q], duration) if highlights else None,
                )
            )
        for b in range(batch.num_videos):
            results.append((indices[position + b], per_video.get(b, [])))
        position += batch.num_videos
    gathered = gather_objects(results) if world > 1 else [results]
    ordered = sorted((item for part in gathered for item in part), key=lambda pair: pair[0])
    predictions = [p for _, preds in ordered for p in preds]
    limit = len(predictions) if keep_maps is True else int(keep_maps)
    for n, p in enumerate(predictions):
        if n >= limit:
            p.score_map = None
    model.train(was_training)
    return predictions


def metrics_of(predictions: list[Prediction], recall_at, iou_thresholds) -> dict:
    return grounding_metrics([p.candidates[:, :2] for p in predictions], [p.gt for p in predictions],
                             recall_at, iou_thresholds)


def evaluate(model, dataset, cfg, device, *, keep_maps: int | bool = False, autocast_dtype=None, progress=False) -> EvalResult:
    """Predictions and metrics of ``model`` on ``dataset`` with the protocol of ``cfg.eval``."""
    e = cfg.eval
    predictions = predict(
        model, dataset, device=device, batch_size=e.batch_size, score_gamma=e.score_gamma, nms_thresh=e.nms_thresh,
        num_candidates=max(e.num_candidates, max(e.recall_at)), keep_maps=keep_maps,
        highlights=reads_qvhighlights(cfg.data), max_tokens=cfg.model.text_max_tokens,
        num_workers=loader_workers(cfg.data.num_workers, torch.device(device)),
        autocast_dtype=autocast_dtype, progress=progress,
    )
    return EvalResult(metrics_of(predictions, e.recall_at, e.iou_thresholds), predictions,
                      list(e.iou_thresholds), list(e.recall_at))


def evaluate_checkpoint(
    checkpoint: str,
    *,
    split: str | None = None,
    overrides: list[str] | None = None,
    predictions_out: str | None = None,
    dump_maps: bool = False,
    device: str = "auto",
    nms_thresh: float | None = None,
    iou_thresholds: list[float] | None = None,
    recall_at: list[int] | None = None,
    precision: str = GROUNDING_PRECISION,
) -> EvalResult:
    """``tools/eval.py --checkpoint``: load, evaluate a split, write its predictions file.
    ``precision`` is the forward pass's (fp32, bf16 or auto), not the checkpoint's train.precision."""
    from g2l.data.dataset import build_dataset
    from g2l.engine.distributed import resolve_device
    from g2l.engine.precision import autocast_dtype
    from g2l.models.checkpoint import model_from_checkpoint
    from g2l.models.checkpoint import load_model_source

    torch_device = resolve_device(device, setting="device")  # before the slow part
    forward_dtype = autocast_dtype(precision, torch_device)
    payload, _ = load_model_source(checkpoint)  # a file, an exported folder or a hub repo id
    extra = list(overrides or [])
    if nms_thresh is not None:
        extra.append(f"eval.nms_thresh={nms_thresh}")
    if iou_thresholds:
        extra.append(f"eval.iou_thresholds={list(iou_thresholds)}")
    if recall_at:
        extra.append(f"eval.recall_at={list(recall_at)}")
    extra.append("eval.best_metric=mIoU")  # it only picks best.pt in training; mIoU is always reported
    model, cfg = model_from_checkpoint(payload, str(checkpoint), extra)
    split = split or cfg.data.eval_split
    if predictions_out:
        out = Path(predictions_out)
    elif Path(checkpoint).is_file():
        out = Path(checkpoint).with_name(f"predictions_{split}.jsonl")
    else:  # a folder or a repo id (in the hub cache): the current folder, not inside the model
        out = Path(f"predictions_{split}.jsonl")
    problem = unwritable_reason(out)
    if problem:  # found before the evaluation, not after it
        raise PredictionsError(f"predictions file {out} {problem}; pass --out with a path you can write to")
    qvhighlights = qvhighlights_annotations(cfg.data, split)  # also scored as its users score it
    submission = out.with_name(f"{out.stem}_qvhighlights.jsonl") if qvhighlights else None
    if submission and (problem := unwritable_reason(submission)):
        raise PredictionsError(f"QVHighlights submission file {submission} {problem}; "
                               "pass --out in a folder you can write to")
    dataset, report = build_dataset(cfg.data, split, cfg.model.num_clips)
    import sys

    print(report, file=sys.stderr)
    model.to(torch_device)
    result = evaluate(model, dataset, cfg, torch_device, keep_maps=dump_maps, progress=True, autocast_dtype=forward_dtype)
    write_predictions(out, result.predictions)
    if submission:
        result.metrics.update(score_split(result.predictions, qvhighlights, cfg.eval.nms_thresh, submission))
        result.submission_path = submission
    result.predictions_path = out
    return result
