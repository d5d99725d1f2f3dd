"""Which kernels compute G2L's two no-gradient signals: ``loss.kernels = auto | numba | torch``.

* ``numba``: the geodesic closeness by a bounded Dijkstra and the Shapley interactions by the Numba
  estimator, both on the CPU (tensors on a GPU are copied to the host and back, and the GPU waits).
* ``torch``: :mod:`g2l.ops.geodesic_torch` and :mod:`g2l.ops.shapley_torch`, on the batch's device;
  the same closeness (exactly) and the same stratified estimator (other random draws).
* ``auto``: torch on CUDA; on a CPU, per signal, whichever ``bench/g2l_cost.py`` measured faster
  (``CPU_CHOICE``). The plain Shapley estimator (``loss.ssi_estimator=plain``) exists in Numba only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

KERNELS = ("auto", "numba", "torch")

# auto on a CPU. Measured by `python bench/g2l_cost.py --quick --step-configs ""` (1 thread, under
# load from other jobs on a 2-core machine; the loss's geodesic and Shapley parts at the Charades-STA
# and ActivityNet batch shapes):
CPU_CHOICE = {"geodesic": "numba", "shapley": "numba"}


def resolve_kernels(choice: str, device: torch.device, part: str, estimator: str = "stratified") -> str:
    """``loss.kernels`` -> "numba" or "torch" for ``part`` ("geodesic" or "shapley") of a batch on ``device``."""
    if choice not in KERNELS:
        raise ValueError(f"loss.kernels must be one of {', '.join(KERNELS)}, got {choice!r}")
    if part == "shapley" and estimator != "stratified":
        if choice == "torch":
            raise ValueError(f"the torch Shapley kernel implements the stratified estimator only, got {estimator!r}")
        return "numba"
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
