"""Which floating-point precision the forward pass runs in.

``fp32`` runs everything in float32. ``bf16`` runs the forward pass under ``torch.autocast`` with
bfloat16: convolutions and matrix products in bf16, losses and normalisations in float32.
``auto`` picks bf16 where the hardware runs it fast: CUDA, and CPUs with bf16 dot-product
instructions (AVX512-BF16 or AMX-BF16, read from /proc/cpuinfo on Linux; float32 on every other
CPU; the environment variable ``G2L_CPU_BF16=1|0`` says yes or no instead of the CPU, see
``cpu_runs_bf16_fast``).

Where each is used:

- Training (``train.precision``, default ``auto``). On a CPU with bf16 dot products training runs
  about 1.5x faster in bf16 (the map's step 1.6x), and three seeds of MMN on the synthetic
  charades preset ended within the seed noise of fp32, 1.2 points of R1@0.5 lower on average
  (README, "Training step"). The resolved choice is printed at the start of training;
  ``train.precision=fp32`` keeps float32.
- Grounding (``Grounder``, ``g2l-ground``, its ``--batch`` mode, the app) and evaluation
  (``g2l-eval --checkpoint`` and the evaluation at the end of each training epoch) run in
  ``GROUNDING_PRECISION``, float32, whatever the checkpoint's ``train.precision`` says: bf16 keeps
  8 bits of mantissa, so the scores of a barely trained or flat map tie in bf16 and which tied
  moment comes first turns on last-bit differences between kernels (a query alone or in a batch,
  one CPU or another). In float32 a query's scores agree within 1e-5 on any CPU (other kernels
  move them by about 1e-7), so it gets the same moments unless two score within that of each
  other; and Grounder grounds each query on its own, so on one machine its answer does not change
  with the batch at all. ``precision="bf16"`` (``--precision bf16``) remains for speed; its
  answers may differ from float32 (scores by up to about 1e-3), between CPUs and, in evaluation,
  with eval.batch_size.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from functools import lru_cache

import torch

from g2l.errors import G2LError

PRECISIONS = ("fp32", "bf16", "auto")
GROUNDING_PRECISION = "fp32"  # grounding and evaluation, unless a caller asks for another
CPU_BF16_VARIABLE = "G2L_CPU_BF16"
_FAST_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


class PrecisionError(G2LError):
    """A precision setting that is not one g2l knows."""


def cpu_runs_bf16_fast() -> bool:
    """Whether this CPU runs bf16 dot products fast, which is what ``auto`` picks bf16 for on a CPU.

    ``G2L_CPU_BF16=1`` answers yes and ``G2L_CPU_BF16=0`` no, whatever the CPU: run the tests (or
    a training) as on a CPU with or without bf16. Unset or empty, the answer is whether
    /proc/cpuinfo lists AVX512-BF16 or AMX-BF16 (False where it cannot tell). The variable is read
    at every call; the CPU's flags once.
    """
    forced = os.environ.get(CPU_BF16_VARIABLE, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise PrecisionError(f"the environment variable {CPU_BF16_VARIABLE} is {forced[:40]!r}; set it to 1 (run as "
                             "on a CPU with fast bf16), 0 (as on one without) or leave it unset (read the CPU)")
    return cpu_has_bf16_flags()


@lru_cache(maxsize=1)
def cpu_has_bf16_flags() -> bool:
    """Whether /proc/cpuinfo lists AVX512-BF16 or AMX-BF16; False where it cannot tell."""
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
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {str(precision)[:40]!r}")
    kind = torch.device(device).type
    if precision == "fp32" or kind not in ("cpu", "cuda"):
        return None
    if precision == "bf16" or kind == "cuda" or cpu_runs_bf16_fast():
        return torch.bfloat16
    return None


def autocast(dtype: torch.dtype | None, device: torch.device | str, *, exact: bool = False):
    """A context running the forward pass in ``dtype`` (None: as it is). ``exact`` (grounding and
    evaluation): in float32 on CUDA, with TF32 off for matrix products and convolutions, which recent
    GPUs otherwise use for float32 and which would move scores by about 1e-3 from a CPU's."""
    if dtype is None:
        return no_tf32() if exact and torch.device(device).type == "cuda" else nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


@contextmanager
def no_tf32():
    """True float32 matrix products and convolutions on CUDA inside the block (TF32 off), restored after."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
