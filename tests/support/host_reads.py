"""Counting what copies a tensor's values to the host (on CUDA, each is a synchronisation), on any
device: a ``TorchFunctionMode`` that records the tensor methods and functions that read values.
Used by tests/losses/test_kernels.py and bench/loss_syncs.py."""

from __future__ import annotations

import collections

from torch.overrides import TorchFunctionMode

EXPLICIT_READS = ("item", "cpu", "tolist", "numpy")  # reads of a tensor's values on the host
IMPLICIT_READS = ("__bool__", "__int__", "__float__", "__index__", "nonzero", "unique", "masked_select",
                  "repeat_interleave")  # a Python scalar, or an output whose size depends on the values


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...``; then ``reads.calls`` counts each read by name."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in EXPLICIT_READS + IMPLICIT_READS:
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))
