"""Which kernels compute G2L's two no-gradient signals: ``auto | numba | torch``.

* ``numba``: the geodesic closeness by a bounded Dijkstra and the Shapley interactions by the Numba
  estimator, both on the CPU (tensors on a GPU are copied to the host and back, and the GPU waits).
* ``torch``: :mod:`g2l.ops.geodesic_torch` and :mod:`g2l.ops.shapley_torch`, on the batch's device;
  the same closeness (exactly) and the same stratified estimator (other random draws).
* ``auto``: torch on CUDA; on a CPU, per signal, whichever ``bench/g2l_cost.py`` measured faster
  (``CPU_CHOICE``).

This is not a setting of the method (both give the same loss up to the estimator's random draws):
the losses take an explicit ``kernels=`` (benches and tests compare the two that way), and without
one they read the environment variable ``G2L_KERNELS`` (:func:`kernels_from_environment`, default
``auto``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from g2l.errors import G2LError

KERNELS = ("auto", "numba", "torch")
KERNELS_VARIABLE = "G2L_KERNELS"  # the environment variable read when no kernels= is given

# auto on a CPU: Numba for both (figures: docs/benchmarks.md, bench/g2l_cost.py).
CPU_CHOICE = {"geodesic": "numba", "shapley": "numba"}


class KernelsError(G2LError):
    """A kernel choice (``G2L_KERNELS`` or ``kernels=``) that is not one of ``KERNELS``."""


def kernels_from_environment() -> str:
    """``G2L_KERNELS`` -> "auto", "numba" or "torch" (unset or empty: "auto"); read at every call."""
    value = os.environ.get(KERNELS_VARIABLE, "").strip()
    if not value:
        return "auto"
    if value not in KERNELS:
        raise KernelsError(f"the environment variable {KERNELS_VARIABLE}={value!r} is not a kernel choice; "
                           f"set it to one of {', '.join(KERNELS)} or unset it (auto)")
    return value


def chosen_kernels(kernels: str | None) -> str:
    """An explicit ``kernels=`` as given (checked), or, for None, :func:`kernels_from_environment`."""
    if kernels is None:
        return kernels_from_environment()
    if kernels not in KERNELS:
        raise KernelsError(f"kernels={kernels!r} is not a kernel choice; pass one of {', '.join(KERNELS)}")
    return kernels


def resolve_kernels(choice: str, device: torch.device, part: str) -> str:
    """``auto | numba | torch`` -> "numba" or "torch" for ``part`` ("geodesic" or "shapley") of a batch on ``device``."""
    if choice not in KERNELS:
        raise KernelsError(f"kernels must be one of {', '.join(KERNELS)}, got {choice!r}")
    if choice != "auto":
        return choice
    return "torch" if device.type == "cuda" else CPU_CHOICE[part]


def interaction_estimator(kernels: str) -> Callable:
    """"numba" or "torch" -> its ``pairwise_interaction_batch`` (one signature: a list of ``(s_v m_v)``
    similarity games -> a list of interactions, and of standard errors)."""
    if kernels == "torch":
        from g2l.ops.shapley_torch import pairwise_interaction_batch
    else:
        from g2l.ops.shapley import pairwise_interaction_batch
    return pairwise_interaction_batch
