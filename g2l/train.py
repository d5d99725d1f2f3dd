"""The training loop, as plain functions: set up, train an epoch, evaluate, checkpoint, repeat.

Epochs are counted from 1. The text backbone is frozen while ``epoch <= train.freeze_text_epochs``;
the contrastive terms are scaled down once ``epoch > loss.only_iou_epoch``. After every epoch the
model is evaluated on ``data.eval_split``; ``checkpoints/last.pt`` is written every epoch and
``checkpoints/best.pt`` when ``eval.best_metric`` improves; at the end, best.pt gets its match
threshold (``fit_match``, g2l/eval/match.py) and its summary of the training videos' features
(``fit_domain``, g2l/data/domain.py). ``resume_dir`` continues a run exactly
where its last checkpoint left it (same data order, dropout draws, optimiser state and schedule;
the resume helpers are ``g2l.engine.resume``).

Read top to bottom: ``train`` (the loop), ``set_up`` (data, model, loss, run folder, optimiser,
logger, loader into a ``Run``), ``train_epoch`` (the steps of one epoch), ``end_epoch`` (evaluate,
write predictions, log, checkpoint). A loss that stops being finite ends training with
``TrainingDivergedError`` before anything is saved, so ``last.pt`` stays the last good epoch.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from g2l.config import Config, apply_overrides, config_to_dict, save_config
from g2l.data.dataset import Collate, build_dataset, loader_workers
from g2l.engine.distributed import (
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    sync_buffers,
)
from g2l.engine.logging import READ_EVERY_STEPS, RunLogger, StepValues, say
from g2l.engine.optim import build_optimizer, lr_factor, set_learning_rates, set_text_trainable
from g2l.engine.precision import autocast, autocast_dtype
from g2l.engine.resume import best_on_disk, load_resume_state, load_training_state, truncate_metrics
from g2l.engine.run_dir import create_run_dir, lock_run_dir, plan_run_dir
from g2l.errors import G2LError
from g2l.eval.evaluator import evaluate
from g2l.eval.predictions import write_predictions
from g2l.io import atomic
from g2l.losses.combine import RAW_PREFIX, build_loss
from g2l.models.checkpoint import load_model_state, save_checkpoint
from g2l.models.grounding import build_model


@dataclass
class TrainResult:
    run_dir: Path
    best: dict  # {"epoch": int, metric: value, ...}
    last_metrics: dict
    epochs_run: int


class TrainingDivergedError(G2LError):
    """The loss or the weights stopped being finite; the message names the epoch and step."""


@dataclass
class Run:
    """What a training run carries from one epoch to the next."""

    cfg: Config
    run_dir: Path
    main: bool  # rank 0: writes files and logs
    device: torch.device
    world_size: int
    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: DistributedSampler
    loader: DataLoader
    eval_set: torch.utils.data.Dataset
    logger: RunLogger
    frame_encoder: dict  # recorded in checkpoints, so that video files can be grounded
    forward_dtype: torch.dtype | None  # None: float32
    start_epoch: int
    global_step: int
    best: dict
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    net_text_trainable: bool | None = None  # what ``net`` was built for
    lrs: dict = field(default_factory=dict)  # the learning rates of the last step
    last_metrics: dict = field(default_factory=dict)


def train(cfg: Config | None = None, *, resume_dir: str | Path | None = None, overrides: list[str] | None = None) -> TrainResult:
    """Train from ``cfg`` into a new run folder, or continue the run in ``resume_dir``."""
    payload = None
    # Rank 0 alone locks and tidies the run folder; torchrun says which rank this is in RANK.
    main = int(os.environ.get("RANK", "0")) == 0
    with ExitStack() as held:  # the run folder's lock, released when training ends either way
        if resume_dir is not None:
            resume_dir = Path(resume_dir)
            cfg, payload = load_resume_state(resume_dir, main, held)
        if cfg is None:
            raise ValueError("train() needs a config or a run folder to resume")
        apply_overrides(cfg, overrides or [])
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)
        dist_ctx = init_distributed(cfg.train.device)
        try:
            run = set_up(cfg, payload, resume_dir, dist_ctx, held)
            epoch = run.start_epoch - 1
            for epoch in range(run.start_epoch, cfg.train.epochs + 1):
                train_record = train_epoch(run, epoch)
                end_epoch(run, epoch, train_record)
            if epoch >= run.start_epoch:
                fit_into_best(run)
            run.logger.finish()
            return TrainResult(run_dir=run.run_dir, best=run.best, last_metrics=run.last_metrics,
                               epochs_run=max(epoch - run.start_epoch + 1, 0))
        finally:
            cleanup()


def set_up(cfg: Config, payload: dict | None, resume_dir: Path | None, dist_ctx, held: ExitStack) -> Run:
    """Data, model, loss, run folder, optimiser, logger and loader, in this order (the order the
    random-number streams are drawn in, so a resumed run continues exactly)."""
    t = cfg.train
    main, device = dist_ctx.is_main, dist_ctx.device
    torch.manual_seed(t.seed)
    planned = None if resume_dir is not None or not main else plan_run_dir(cfg.log.output_dir, cfg.log.run_name, cfg.data.name)
    train_set, train_report = build_dataset(cfg.data, cfg.data.train_split, cfg.model.num_clips)
    eval_set, eval_report = build_dataset(cfg.data, cfg.data.eval_split, cfg.model.num_clips)
    say(train_report + "\n" + eval_report, main)

    frame_encoder = train_set.features.encoder_spec()
    model = build_model(cfg, text_spec=payload.get("text_backbone") if payload else None).to(device)
    if payload is not None:
        load_model_state(model, payload["model"], str(resume_dir))
    loss_fn = build_loss(cfg)
    run_dir = _open_run_dir(cfg, payload, resume_dir, planned, main, held)

    optimizer = build_optimizer(model, lr=t.lr, text_lr_scale=t.text_lr_scale, weight_decay=t.weight_decay,
                                betas=tuple(t.betas))
    start_epoch, global_step, best = 1, 0, {}
    if payload is not None:
        load_training_state(optimizer, payload, str(run_dir / "checkpoints" / "last.pt"))
        start_epoch, global_step = payload["epoch"] + 1, payload["global_step"]
        best = best_on_disk(run_dir, payload["best"], main)
        say(f"resuming {run_dir} after epoch {payload['epoch']} (step {global_step})", main)
    elif resume_dir is not None:
        best = best_on_disk(run_dir, {}, main)

    logger = RunLogger(run_dir, config=config_to_dict(cfg), mode=cfg.log.wandb, project=cfg.log.wandb_project,
                       name=run_dir.name, enabled=main,
                       resume_id=(payload or {}).get("extra", {}).get("wandb_id") if payload else None)
    if main and resume_dir is None:
        held.push(_remove_if_nothing_saved(run_dir, logger))
    per_rank_batch = max(t.batch_size // dist_ctx.world_size, 1)
    sampler = DistributedSampler(train_set, num_replicas=dist_ctx.world_size, rank=dist_ctx.rank, shuffle=True,
                                 seed=t.seed, drop_last=False)
    workers = loader_workers(cfg.data.num_workers, device)
    loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler, num_workers=workers,
                        collate_fn=Collate(model.tokenizer, cfg.model.text_max_tokens),
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    forward_dtype = autocast_dtype(t.precision, device)
    say(f"precision {t.precision}: forward pass in {'bf16' if forward_dtype is not None else 'fp32'} on {device}", main)
    return Run(cfg=cfg, run_dir=run_dir, main=main, device=device, world_size=dist_ctx.world_size, model=model,
               loss_fn=loss_fn, optimizer=optimizer, sampler=sampler, loader=loader, eval_set=eval_set, logger=logger,
               frame_encoder=frame_encoder, forward_dtype=forward_dtype, start_epoch=start_epoch,
               global_step=global_step, best=best, net=model)


def train_epoch(run: Run, epoch: int) -> dict[str, float]:
    """One pass over the training data; returns the epoch's mean losses (``train_epoch/<term>`` weighted
    as they enter the total, ``train_epoch/raw_<term>`` unweighted, ``train_epoch/stat_*``), its duration, and ``train_epoch/data_wait_share``: the share of that duration the loop spent
    waiting for the next batch (the loader's ``next`` and the copy to the device)."""
    cfg, t, model = run.cfg, run.cfg.train, run.model
    text_trainable = epoch > t.freeze_text_epochs
    set_text_trainable(model, text_trainable)
    model.train()
    if run.world_size > 1 and text_trainable != run.net_text_trainable:
        # DDP all-reduces the parameters that require gradients when it is built, so it is built
        # when training starts and again when the text backbone is unfrozen.
        run.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
        run.net_text_trainable = text_trainable
    run.sampler.set_epoch(epoch)
    steps_per_epoch = len(run.loader)
    sums: dict[str, float] = {}
    pending = StepValues()
    started, videos, data_wait_s = time.perf_counter(), 0, 0.0
    bar = run.loader
    if run.main and cfg.log.progress:
        from tqdm import tqdm

        bar = tqdm(run.loader, desc=f"epoch {epoch}/{t.epochs}", dynamic_ncols=True, leave=False, file=sys.stderr)
    batches = iter(bar)
    while True:
        asked = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            data_wait_s += time.perf_counter() - asked
            break
        batch = batch.to(run.device, non_blocking=True)  # pinned on CUDA: the copy overlaps the step
        data_wait_s += time.perf_counter() - asked
        run.lrs = set_learning_rates(run.optimizer, lr_factor(run.global_step, steps_per_epoch,
                                                              warmup_epochs=t.warmup_epochs,
                                                              milestones=t.milestones, decay=t.lr_decay))
        with autocast(run.forward_dtype, run.device):
            output = run.net(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video,
                             batch.sentence_mask.shape[1])
        terms = run.loss_fn(output, batch, model.cell_start_idx, model.cell_end_idx, epoch, run.global_step)
        run.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], t.clip_grad_norm)
        run.optimizer.step()
        run.global_step += 1
        videos += batch.num_videos
        # The terms stay on the device and are read every READ_EVERY_STEPS steps (one sync, not one
        # per step); a loss that stopped being finite is found there, before anything is saved.
        pending.add(run.global_step, terms, grad_norm, run.lrs)
        if len(pending) >= READ_EVERY_STEPS:
            _report_steps(run, epoch, pending, sums, bar, videos, started)
    _report_steps(run, epoch, pending, sums, bar, videos, started)
    if bar is not run.loader:
        bar.close()
    sync_buffers(model)  # BatchNorm statistics: every rank evaluates and saves rank 0's
    epoch_losses = all_reduce_mean(torch.tensor([sums.get(k, 0.0) / max(steps_per_epoch, 1) for k in sorted(sums)]))
    record = {f"train_epoch/{k}": float(v) for k, v in zip(sorted(sums), epoch_losses)}
    record["train_epoch/seconds"] = time.perf_counter() - started
    record["train_epoch/data_wait_share"] = min(data_wait_s / max(record["train_epoch/seconds"], 1e-9), 1.0)
    return record


def _report_steps(run: Run, epoch: int, pending: StepValues, sums: dict[str, float], bar, videos: int,
                  started: float) -> None:
    """Read the pending steps' terms (one sync), stop on a loss that is not finite, add them to the
    epoch's sums and log each step."""
    for step, values, lrs in pending.read():
        losses = {k: v for k, v in values.items() if k != "grad_norm"}
        if not all(math.isfinite(v) for v in losses.values()):
            raise _diverged(run, epoch, step, losses)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        run.logger.log_step(step, values, lrs)
        if bar is not run.loader:
            rate = videos * run.world_size / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{values['total']:.4f}", videos_per_s=f"{rate:.1f}")


def end_epoch(run: Run, epoch: int, train_record: dict[str, float]) -> None:
    """Evaluate, then (rank 0) write the predictions, log the epoch and write the checkpoints."""
    cfg, e, model = run.cfg, run.cfg.eval, run.model
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):  # the last step's update overflowed
        raise _diverged(run, epoch, run.global_step, {})
    result = evaluate(model, run.eval_set, cfg, run.device,
                      keep_maps=True if e.dump_score_maps else cfg.log.num_example_maps)  # fp32, as g2l-eval
    run.last_metrics = result.metrics
    improved = not run.best or result.metrics[e.best_metric] > run.best.get(e.best_metric, -1.0)
    if improved:
        run.best = {"epoch": epoch, **{k: v for k, v in result.metrics.items()}}
    if run.main:
        split = cfg.data.eval_split
        write_predictions(run.run_dir / "predictions" / f"{split}_epoch{epoch:03d}.jsonl",
                          result.predictions if e.dump_score_maps else _without_maps(result.predictions))
        record = {**{f"eval/{k}": v for k, v in result.metrics.items()}, **train_record,
                  **{f"lr/{k}": v for k, v in run.lrs.items()}}
        run.logger.log_epoch(epoch, run.global_step, record)
        run.logger.log_examples(run.global_step, result.predictions, cfg.log.num_example_predictions,
                                cfg.log.num_example_maps)
        summary = "  ".join(f"{k} {100 * v:.2f}" for k, v in result.metrics.items() if k.startswith("R1@") or k == "mIoU")
        say(f"epoch {epoch}: loss {train_record.get('train_epoch/total', float('nan')):.4f}  {summary}  "
            f"data wait {100 * train_record.get('train_epoch/data_wait_share', 0.0):.0f}%")
        extra = {"wandb_id": run.logger.wandb_id}
        shared = dict(model=model, cfg=cfg, epoch=epoch, global_step=run.global_step, best=run.best, extra=extra,
                      frame_encoder=run.frame_encoder, include_text_backbone=cfg.log.checkpoint_text_backbone)
        # best.pt before last.pt: a run killed between the two writes resumes from the previous
        # last.pt and redoes this epoch, and best_on_disk adopts what best.pt holds.
        if improved:
            save_checkpoint(run.run_dir / "checkpoints" / "best.pt", include_rng=False, **shared)
            atomic.kill_point("between-checkpoints")
        save_checkpoint(run.run_dir / "checkpoints" / "last.pt", optimizer=run.optimizer, **shared)
    barrier()


def fit_into_best(run: Run) -> None:
    """(rank 0) Write into best.pt, in one rewrite of the file: its match threshold, fitted on the eval
    split leave-one-video-out (g2l/eval/match.py), and what the training videos' features looked like
    (g2l/data/domain.py), so that grounding can say "not here" and warn about a video unlike them."""
    best = run.run_dir / "checkpoints" / "best.pt"
    if run.main and best.is_file():
        from g2l.data.domain import fit_dataset_summary
        from g2l.eval.match import decision_note, fit_match_into_checkpoint

        split = run.cfg.data.eval_split
        summary = fit_dataset_summary(run.loader.dataset)
        fit = fit_match_into_checkpoint(best, run.eval_set, run.device, fitted_on=f"{split} split (leave-one-video-out)",
                                        also={"domain": summary})
        say(f"match threshold {fit.threshold:.4f} fitted on the {split} split: AUROC {100 * fit.auroc:.1f}, "
            f"precision {100 * fit.precision:.1f}, recall {100 * fit.recall:.1f} (written into {best})"
            + decision_note(fit.as_dict()))
        say(f"domain summary of {summary['num_videos']} training videos written into {best} (a video is "
            f"flagged beyond feature distance {summary['threshold']:.2f})")
    barrier()


def _open_run_dir(cfg: Config, payload: dict | None, resume_dir: Path | None, planned: Path | None, main: bool,
                  held: ExitStack) -> Path:
    """The run folder, made only once data and model are known to load, so that a bad path leaves
    nothing behind: the resumed one (its metrics cut back to the checkpoint), or a new one that
    rank 0 creates and locks and the other ranks learn the name of. Rank 0 writes config.yaml."""
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if main:
            truncate_metrics(run_dir / "metrics.jsonl", payload["epoch"] if payload else 0, main)
    else:
        run_dir = None
        if main:
            run_dir = create_run_dir(planned)
            lock = lock_run_dir(run_dir)
            if lock is not None:
                held.enter_context(lock)
        run_dir = broadcast_object(run_dir)
    if main:
        save_config(cfg, run_dir / "config.yaml")
    return run_dir


def _diverged(run: Run, epoch: int, step: int, values: dict[str, float]) -> TrainingDivergedError:
    """The one sentence for a run whose loss (``values``) or weights stopped being finite."""
    what = ", ".join(f"{k} = {v}" for k, v in values.items()
                     if not math.isfinite(v) and not k.startswith(RAW_PREFIX)) or "a weight is not finite"
    last = run.run_dir / "checkpoints" / "last.pt"
    kept = (f"{last}, of epoch {epoch - 1}, is kept as the last good checkpoint" if last.is_file()
            else "no epoch had finished, so there is no checkpoint to keep")
    return TrainingDivergedError(
        f"training diverged at epoch {epoch}, step {step} ({what}): train again with a lower train.lr "
        f"(now {run.cfg.train.lr:g}) or check the features for huge values; {kept}")


def _remove_if_nothing_saved(run_dir: Path, logger: RunLogger):
    """An exit callback for a new run: when bad input (a ValueError, such as a feature file found
    corrupt mid-epoch, or a loss that diverged) stops it before its first checkpoint, its folder is
    removed, so that nothing half-written is left and the same command can simply be run again."""
    def on_exit(exc_type, error, traceback) -> bool:
        if isinstance(error, ValueError) and not (run_dir / "checkpoints" / "last.pt").exists():
            logger.finish()
            shutil.rmtree(run_dir, ignore_errors=True)
        return False

    return on_exit


def _without_maps(predictions):
    return [replace(p, score_map=None) for p in predictions]
