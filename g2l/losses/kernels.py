"""Which kernels compute G2L's two no-gradient signals: ``loss.kernels = auto | numba | torch``.

* ``numba``: the geodesic closeness by a bounded Dijkstra and the Shapley interactions by the Numba
  estimator, both on the CPU (tensors on a GPU are copied to the host and back, and the GPU waits).
* ``torch``: :mod:`g2l.ops.geodesic_torch` and :mod:`g2l.ops.shapley_torch`, on the batch's device;
  the same closeness (exactly) and the same stratified estimator (other random draws).
* ``auto``: torch on CUDA; on a CPU, per signal, whichever ``bench/g2l_cost.py`` measured faster
  (``CPU_CHOICE``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

KERNELS = ("auto", "numba", "torch")

# auto on a CPU: Numba for both. `python bench/g2l_cost.py --quick --sections d` (section (d); 1 thread,
# the idle 2-core development machine, 2026-12-04), seconds per call, Numba vs torch, at the public
# batch of 48 videos (bench model's map features, 512 Shapley draws per sentence):
#                  geodesic                  Shapley (SSI)              whole G2L loss forward
#   Charades-STA   0.017 vs 0.021 (1.26x)    0.098 vs 0.170 (1.72x)     0.129 vs 0.206 (1.60x)
#   ActivityNet    0.39  vs 1.28  (3.30x)    0.24  vs 0.47  (1.99x)     0.77  vs 1.89  (2.45x)
# (the torch geodesic kernel runs a dense Gram matrix and p - 1 bounded relaxation rounds where the
# lazy Dijkstra touches only the reached cells; the torch Shapley kernel evaluates value tensors
# for every moment of a chunk of draws, which a GPU fills at once and one CPU core walks through).
CPU_CHOICE = {"geodesic": "numba", "shapley": "numba"}


def resolve_kernels(choice: str, device: torch.device, part: str) -> str:
    """``loss.kernels`` -> "numba" or "torch" for ``part`` ("geodesic" or "shapley") of a batch on ``device``."""
    if choice not in KERNELS:
        raise ValueError(f"loss.kernels must be one of {', '.join(KERNELS)}, got {choice!r}")
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
