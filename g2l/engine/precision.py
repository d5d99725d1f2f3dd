"""Which floating-point precision the forward pass runs in (``train.precision``).

``fp32`` runs everything in float32. ``bf16`` runs the forward pass under ``torch.autocast`` with
bfloat16: convolutions and matrix products in bf16, losses and normalisations in float32.
``auto`` picks bf16 on CUDA and float32 on the CPU. CPUs with bf16 dot products (AVX512-BF16,
AMX) run the map about 2x faster in bf16, but until a synthetic training run shows bf16 ending
within the seed noise of fp32 on the CPU, bf16 there is opt-in (``train.precision=bf16``); the
resolved choice is printed at the start of training.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

PRECISIONS = ("fp32", "bf16", "auto")


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """``torch.bfloat16`` when ``precision`` resolves to bf16 on ``device``, else None (float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32" or kind not in ("cpu", "cuda"):
        return None
    if precision == "bf16" or kind == "cuda":
        return torch.bfloat16
    return None


def autocast(dtype: torch.dtype | None, device: torch.device | str):
    """A context running the forward pass in ``dtype`` (None: as it is)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
