"""Which floating-point precision the forward pass runs in (``train.precision``).

``fp32`` runs everything in float32. ``bf16`` runs the forward pass under ``torch.autocast`` with
bfloat16: convolutions and matrix products in bf16, losses and normalisations in float32.
``auto`` picks bf16 where the device runs it fast - CUDA, and CPUs whose instruction set has
bf16 dot products (AVX512-BF16 or AMX) - and fp32 elsewhere, so a run's precision can depend on
the machine; the resolved choice is printed at the start of training.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch

PRECISIONS = ("fp32", "bf16", "auto")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (read once from /proc/cpuinfo; False
    where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """``torch.bfloat16`` when ``precision`` resolves to bf16 on ``device``, else None (float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32" or kind not in ("cpu", "cuda"):
        return None
    if precision == "bf16" or kind == "cuda" or cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def autocast(dtype: torch.dtype | None, device: torch.device | str):
    """A context running the forward pass in ``dtype`` (None: as it is)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
