"""The training loop, as plain functions: set up, train an epoch, evaluate, checkpoint, repeat.

Epochs are counted from 1. The text backbone is frozen while ``epoch <= train.freeze_text_epochs``;
the contrastive terms are scaled down once ``epoch > loss.only_iou_epoch``. After every epoch the
model is evaluated on ``data.eval_split``; ``checkpoints/last.pt`` is written every epoch and
``checkpoints/best.pt`` when ``eval.best_metric`` improves. ``resume_dir`` continues a run exactly
where its last checkpoint left it (same data order, dropout draws, optimiser state and schedule).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from g2l.atomic import remove_stale_temporaries, write_text_atomic
from g2l.config import Config, apply_overrides, config_from_dict, config_to_dict, load_config, save_config
from g2l.crash_points import crash_point
from g2l.data.dataset import Collate, build_dataset
from g2l.engine import checkpoint as ckpt
from g2l.engine.distributed import (
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    sync_buffers,
)
from g2l.engine.logging import RunLogger
from g2l.engine.optim import build_optimizer, lr_factor, set_learning_rates, set_text_trainable
from g2l.engine.precision import autocast, autocast_dtype
from g2l.engine.run_dir import RunDirError, create_run_dir, lock_run_dir, plan_run_dir, resume_checkpoint_path
from g2l.eval.evaluator import evaluate
from g2l.eval.predictions import write_predictions
from g2l.losses.combine import build_loss
from g2l.models.grounding import build_model


@dataclass
class TrainResult:
    run_dir: Path
    best: dict  # {"epoch": int, metric: value, ...}
    last_metrics: dict
    epochs_run: int


def _say(message: str, enabled: bool = True) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def _best_on_disk(run_dir: Path, recorded: dict, main: bool) -> dict:
    """The best epoch so far as ``checkpoints/best.pt`` holds it, which may differ from what
    ``last.pt`` recorded: best.pt is written first, so a run killed between the two writes has a
    best.pt of the epoch about to be redone. Adopting best.pt's own record keeps the pair consistent
    (the redone epoch replaces best.pt only if it beats it, as an uninterrupted run would)."""
    path = run_dir / "checkpoints" / "best.pt"
    if not path.is_file():
        if recorded:
            _say(f"warning: {path} is missing; the next epoch writes a new one", main)
        return {}
    try:
        held = ckpt.load_checkpoint(path).get("best")
    except ckpt.CheckpointError as error:
        _say(f"warning: {error}; the next epoch writes a new best.pt", main)
        return {}
    if not isinstance(held, dict) or not isinstance(held.get("epoch"), int):
        _say(f"warning: {path} does not say which epoch it holds; the next epoch writes a new one", main)
        return {}
    if held != recorded:
        _say(f"{path} holds epoch {held['epoch']} (last.pt recorded epoch {recorded.get('epoch')}); "
             "it stays the best until an epoch beats it", main)
    return held


def _remove_if_nothing_saved(run_dir: Path, logger: RunLogger):
    """An exit callback for a new run: when bad input (a ValueError, such as a feature file found
    corrupt mid-epoch) stops it before its first checkpoint, its folder is removed, so that nothing
    half-written is left and the same command can simply be run again."""
    def on_exit(exc_type, error, traceback) -> bool:
        if isinstance(error, ValueError) and not (run_dir / "checkpoints" / "last.pt").exists():
            logger.finish()
            shutil.rmtree(run_dir, ignore_errors=True)
        return False

    return on_exit


def _truncate_metrics(path: Path, last_epoch: int, main: bool) -> None:
    """Drop metrics lines of epochs after the checkpoint we resume from (a crash between the two),
    and a last line that a kill cut short."""
    import json

    if not path.is_file():
        return
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    kept = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            if number == len(lines):
                _say(f"{path}: dropping its last line, cut short when the run stopped", main)
                continue
            raise RunDirError(f"{path}, line {number} is not a JSON object; delete that line, then resume again")
        if record.get("epoch", 0) <= last_epoch:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def _resume_state(resume_dir: Path, main: bool, held: ExitStack) -> tuple[Config, dict | None]:
    """Lock the run folder (rank 0), clear what killed writes left, and read the config and the
    checkpoint to continue from: ``(cfg, payload)``, payload None when the run stopped before its
    first epoch ended and starts again from epoch 1."""
    last = resume_checkpoint_path(resume_dir)
    if main:
        lock = lock_run_dir(resume_dir)
        if lock is not None:
            held.enter_context(lock)
        stale = [p for folder in (resume_dir, resume_dir / "checkpoints", resume_dir / "predictions")
                 for p in remove_stale_temporaries(folder)]
        if stale:
            _say(f"removed {len(stale)} temporary file(s) left by interrupted writes ({', '.join(p.name for p in stale)})")
    if last is None:
        _say(f"{resume_dir} has no checkpoints/last.pt (it stopped before its first epoch ended): "
             "starting it again from epoch 1 with its config.yaml", main)
        return load_config(resume_dir / "config.yaml"), None
    payload = ckpt.load_checkpoint(last)
    ckpt.check_resumable(payload, str(last))
    return config_from_dict(payload["config"]), payload


def train(cfg: Config | None = None, *, resume_dir: str | Path | None = None, overrides: list[str] | None = None) -> TrainResult:
    """Train from ``cfg`` into a new run folder, or continue the run in ``resume_dir``."""
    payload = None
    # Rank 0 alone locks and tidies the run folder; torchrun says which rank this is in RANK.
    main = int(os.environ.get("RANK", "0")) == 0
    with ExitStack() as held:  # the run folder's lock, released when training ends either way
        if resume_dir is not None:
            resume_dir = Path(resume_dir)
            cfg, payload = _resume_state(resume_dir, main, held)
        if cfg is None:
            raise ValueError("train() needs a config or a run folder to resume")
        apply_overrides(cfg, overrides or [])
        t = cfg.train
        if t.num_threads > 0:
            torch.set_num_threads(t.num_threads)
        dist_ctx = init_distributed(t.device)
        try:
            return _train(cfg, payload, resume_dir, dist_ctx, held)
        finally:
            cleanup()


def _train(cfg, payload, resume_dir, dist_ctx, held: ExitStack) -> TrainResult:
    t, e = cfg.train, cfg.eval
    main, device = dist_ctx.is_main, dist_ctx.device
    torch.manual_seed(t.seed)
    planned = None if resume_dir is not None or not main else plan_run_dir(cfg.log.output_dir, cfg.log.run_name, cfg.data.name)
    train_set, train_report = build_dataset(cfg.data, cfg.data.train_split, cfg.model.num_clips)
    eval_set, eval_report = build_dataset(cfg.data, cfg.data.eval_split, cfg.model.num_clips)
    _say(train_report + "\n" + eval_report, main)

    frame_encoder = train_set.features.encoder_spec()  # recorded in checkpoints, so video files can be grounded
    model = build_model(cfg, text_spec=payload.get("text_backbone") if payload else None).to(device)
    if payload is not None:
        ckpt.load_model_state(model, payload["model"], str(resume_dir))
    loss_fn = build_loss(cfg)
    # The run folder is made only once data and model are known to load, so a bad path leaves nothing
    # behind. Rank 0 creates it; the others learn its name.
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if main:
            _truncate_metrics(run_dir / "metrics.jsonl", payload["epoch"] if payload else 0, main)
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
    optimizer = build_optimizer(model, lr=t.lr, text_lr_scale=t.text_lr_scale, weight_decay=t.weight_decay,
                                betas=tuple(t.betas))
    start_epoch, global_step, best = 1, 0, {}
    if payload is not None:
        ckpt.load_training_state(optimizer, payload, str(run_dir / "checkpoints" / "last.pt"))
        start_epoch, global_step = payload["epoch"] + 1, payload["global_step"]
        best = _best_on_disk(run_dir, payload["best"], main)
        _say(f"resuming {run_dir} after epoch {payload['epoch']} (step {global_step})", main)
    elif resume_dir is not None:
        best = _best_on_disk(run_dir, {}, main)

    logger = RunLogger(run_dir, config=config_to_dict(cfg), mode=cfg.log.wandb, project=cfg.log.wandb_project,
                       name=run_dir.name, enabled=main,
                       resume_id=(payload or {}).get("extra", {}).get("wandb_id") if payload else None)
    if main and resume_dir is None:
        held.push(_remove_if_nothing_saved(run_dir, logger))
    per_rank_batch = max(t.batch_size // dist_ctx.world_size, 1)
    sampler = DistributedSampler(train_set, num_replicas=dist_ctx.world_size, rank=dist_ctx.rank, shuffle=True,
                                 seed=t.seed, drop_last=False)
    loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler, num_workers=cfg.data.num_workers,
                        collate_fn=Collate(cfg.loss.iou_min, cfg.loss.iou_max, model.tokenizer, cfg.model.text_max_tokens),
                        pin_memory=device.type == "cuda", persistent_workers=cfg.data.num_workers > 0)
    steps_per_epoch = len(loader)
    forward_dtype = autocast_dtype(t.precision, device)  # None: float32
    _say(f"precision {t.precision}: forward pass in {'bf16' if forward_dtype is not None else 'fp32'} on {device}", main)
    last_metrics: dict = {}
    epoch = start_epoch - 1
    net, net_text_trainable = model, None
    for epoch in range(start_epoch, t.epochs + 1):
        text_trainable = epoch > t.freeze_text_epochs
        set_text_trainable(model, text_trainable)
        model.train()
        if dist_ctx.world_size > 1 and text_trainable != net_text_trainable:
            # DDP all-reduces the parameters that require gradients when it is built, so it is built
            # when training starts and again when the text backbone is unfrozen.
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,
            )
            net_text_trainable = text_trainable
        sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        started, videos = time.perf_counter(), 0
        bar = loader
        if main and cfg.log.progress:
            from tqdm import tqdm

            bar = tqdm(loader, desc=f"epoch {epoch}/{t.epochs}", dynamic_ncols=True, leave=False, file=sys.stderr)
        for batch in bar:
            batch = batch.to(device, non_blocking=True)
            lrs = set_learning_rates(optimizer, lr_factor(global_step, steps_per_epoch, warmup_epochs=t.warmup_epochs,
                                                          milestones=t.milestones, decay=t.lr_decay))
            with autocast(forward_dtype, device):
                output = net(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
            terms = loss_fn(output, batch, model.cell_start_idx, model.cell_end_idx, epoch, global_step)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], t.clip_grad_norm)
            optimizer.step()
            global_step += 1
            values = {k: float(v.detach()) for k, v in terms.items()}
            if not all(torch.isfinite(torch.tensor(list(values.values())))):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {global_step}: {values}")
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            videos += batch.num_videos
            logger.log_step(global_step, {**values, "grad_norm": float(grad_norm)}, lrs)
            if bar is not loader:
                rate = videos * dist_ctx.world_size / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(loss=f"{values['total']:.4f}", videos_per_s=f"{rate:.1f}")
        if bar is not loader:
            bar.close()
        sync_buffers(model)  # BatchNorm statistics: every rank evaluates and saves rank 0's
        epoch_losses = all_reduce_mean(torch.tensor([sums.get(k, 0.0) / max(steps_per_epoch, 1) for k in sorted(sums)]))
        train_record = {f"train_epoch/{k}": float(v) for k, v in zip(sorted(sums), epoch_losses)}
        train_record["train_epoch/seconds"] = time.perf_counter() - started

        result = evaluate(model, eval_set, cfg, device, keep_maps=True if e.dump_score_maps else cfg.log.num_example_maps,
                          autocast_dtype=forward_dtype)
        last_metrics = result.metrics
        improved = not best or result.metrics[e.best_metric] > best.get(e.best_metric, -1.0)
        if improved:
            best = {"epoch": epoch, **{k: v for k, v in result.metrics.items()}}
        if main:
            split = cfg.data.eval_split
            write_predictions(run_dir / "predictions" / f"{split}_epoch{epoch:03d}.jsonl",
                              result.predictions if e.dump_score_maps else _without_maps(result.predictions))
            record = {**{f"eval/{k}": v for k, v in result.metrics.items()}, **train_record,
                      **{f"lr/{k}": v for k, v in lrs.items()}}
            logger.log_epoch(epoch, global_step, record)
            logger.log_examples(global_step, result.predictions, cfg.log.num_example_predictions, cfg.log.num_example_maps)
            summary = "  ".join(f"{k} {100 * v:.2f}" for k, v in result.metrics.items() if k.startswith("R1@") or k == "mIoU")
            _say(f"epoch {epoch}: loss {train_record.get('train_epoch/total', float('nan')):.4f}  {summary}", main)
            extra = {"wandb_id": logger.wandb_id}
            shared = dict(model=model, cfg=cfg, epoch=epoch, global_step=global_step, best=best, extra=extra,
                          frame_encoder=frame_encoder, include_text_backbone=cfg.log.checkpoint_text_backbone)
            # best.pt before last.pt: a run killed between the two writes resumes from the previous
            # last.pt and redoes this epoch, and _best_on_disk adopts what best.pt holds.
            if improved:
                ckpt.save_checkpoint(run_dir / "checkpoints" / "best.pt", include_rng=False, **shared)
                crash_point("between-checkpoints")
            ckpt.save_checkpoint(run_dir / "checkpoints" / "last.pt", optimizer=optimizer, **shared)
        barrier()
    logger.finish()
    return TrainResult(run_dir=run_dir, best=best, last_metrics=last_metrics, epochs_run=max(epoch - start_epoch + 1, 0))


def _without_maps(predictions):
    from dataclasses import replace

    return [replace(p, score_map=None) for p in predictions]
