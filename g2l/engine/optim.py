"""AdamW with the text backbone at a fraction of the base rate; warm-up and step schedules.

The learning rate is a pure function of the global step, so a resumed run continues exactly.
"""

from __future__ import annotations

import bisect

import torch

TEXT_BACKBONE = "text_encoder.backbone."


def build_optimizer(model: torch.nn.Module, *, lr: float, text_lr_scale: float, weight_decay: float,
                    betas: tuple[float, float]) -> torch.optim.AdamW:
    """Two groups, ``main`` and ``text`` (the pretrained backbone, at ``lr * text_lr_scale``)."""
    main, text = [], []
    for name, param in model.named_parameters():
        (text if name.startswith(TEXT_BACKBONE) else main).append(param)
    groups = [
        {"params": main, "lr": lr, "base_lr": lr, "name": "main"},
        {"params": text, "lr": lr * text_lr_scale, "base_lr": lr * text_lr_scale, "name": "text"},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def lr_factor(step: int, steps_per_epoch: int, *, warmup_epochs: int, milestones: list[int], decay: float) -> float:
    """Linear warm-up over ``warmup_epochs`` (per step), then ``decay`` at each milestone epoch,
    milestones counted in whole epochs after the warm-up (0-based: milestone 8 decays from the
    9th epoch on, as MultiStepLR stepped once per epoch does)."""
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    epochs_after = (step - warmup_steps) // max(steps_per_epoch, 1)
    return decay ** bisect.bisect_right(sorted(milestones), epochs_after)


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> dict[str, float]:
    lrs = {}
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
        lrs[group["name"]] = group["lr"]
    return lrs


def set_text_trainable(model: torch.nn.Module, trainable: bool) -> None:
    for name, param in model.named_parameters():
        if name.startswith(TEXT_BACKBONE):
            param.requires_grad_(trainable)
