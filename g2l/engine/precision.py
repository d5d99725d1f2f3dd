"""Which floating-point precision the forward pass runs in (``train.precision``).

``fp32`` runs everything in float32. ``bf16`` runs the forward pass under ``torch.autocast`` with
bfloat16: convolutions and matrix products in bf16, losses and normalisations in float32.
``auto`` picks bf16 where the hardware runs it fast: CUDA, and CPUs with bf16 dot-product
instructions (AVX512-BF16 or AMX-BF16, read from /proc/cpuinfo on Linux; float32 on every other
CPU). On such a CPU training runs about 1.5x faster in bf16 (the map's step 1.6x), and three seeds
of MMN on the synthetic charades preset ended within the seed noise of fp32, 1.2 points of R1@0.5
lower on average (README, "Training step"). The resolved choice is printed at the start of
training; ``train.precision=fp32`` keeps float32.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache

import torch

PRECISIONS = ("fp32", "bf16", "auto")
_FAST_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@lru_cache(maxsize=1)
def cpu_runs_bf16_fast() -> bool:
    """Whether this CPU has bf16 dot products (AVX512-BF16 or AMX-BF16); False where it cannot tell."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return bool(_FAST_BF16_FLAGS & set(line.split(":", 1)[1].split()))
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
    if precision == "bf16" or kind == "cuda" or cpu_runs_bf16_fast():
        return torch.bfloat16
    return None


def autocast(dtype: torch.dtype | None, device: torch.device | str):
    """A context running the forward pass in ``dtype`` (None: as it is)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
