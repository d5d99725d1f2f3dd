"""Numba kernels and torch share one OpenMP runtime: keep torch's thread setting intact.

With Numba's OpenMP threading layer, a ``prange`` kernel sets the runtime's thread count to
``numba.get_num_threads()``, which silently changes ``torch.get_num_threads()`` for the rest of the
process: a run configured for one thread (``train.num_threads=1``) would train on every core
after its first G2L step. Each kernel call therefore runs inside :func:`kernel_threads`, which
gives Numba at most as many threads as torch is allowed and restores both settings afterwards.
"""

from __future__ import annotations

import contextlib

import numba
import torch


@contextlib.contextmanager
def kernel_threads():
    torch_threads = torch.get_num_threads()
    numba_threads = numba.get_num_threads()
    numba.set_num_threads(max(1, min(numba_threads, torch_threads)))
    try:
        yield
    finally:
        numba.set_num_threads(numba_threads)
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
