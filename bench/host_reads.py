"""Counting what would make a GPU wait for the host, on any device (a CPU dry run included): a
``TorchFunctionMode`` that records

* reads of a device tensor's values on the host (``item``, ``tolist``, ``bool(t)``, an output whose
  size depends on the values, ...): on CUDA each is a sync;
* blocking copies of host data to the device: ``torch.as_tensor`` / ``torch.tensor`` of numpy arrays,
  lists or host tensors with a ``device``, and ``.to(device)`` / ``.cuda()`` / ``copy_`` of host
  tensors without ``non_blocking=True`` (from pageable memory, CUDA waits for the copy: a sync);
  non-blocking ones are counted apart (``h2d_async``), they are not syncs.

A tensor is a host tensor when it was made on the host: by ``torch.from_numpy``, by a factory
without a ``device`` (``torch.empty(n)``, ``torch.tensor([...])``), or by an operation whose tensor
inputs are all host tensors (``pin_memory``, ``numpy``...); every other tensor counts as the
device's, so on the CPU the counts are those a GPU would see. Reads of host tensors are free.

A measuring instrument, so it lives with the benchmarks (bench/loss_syncs.py); the tests that hold
the loss to its sync counts import it from here (tests/losses/test_kernels.py, tests/bench/test_host_reads.py).
"""

from __future__ import annotations

import collections
import weakref

import torch
from torch.overrides import TorchFunctionMode

EXPLICIT_READS = ("item", "cpu", "tolist", "numpy")  # reads of a tensor's values on the host
IMPLICIT_READS = ("__bool__", "__int__", "__float__", "__index__", "nonzero", "unique", "masked_select",
                  "repeat_interleave", "is_nonzero", "equal", "any_", "allclose")  # a Python value, or a data-dependent size
FACTORIES = ("tensor", "as_tensor", "empty", "zeros", "ones", "full", "arange", "rand", "randn", "randint",
             "empty_like", "zeros_like", "ones_like", "full_like", "linspace", "eye", "asarray")
SYNCS = EXPLICIT_READS + IMPLICIT_READS + ("h2d",)  # the kinds that are syncs on CUDA


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _names_device(args, kwargs) -> bool:
    """Whether ``.to(...)``'s arguments name a device (not only a dtype)."""
    if kwargs.get("device") is not None:
        return True
    return any(isinstance(a, (torch.device, str)) for a in args[1:]) or any(
        isinstance(a, torch.Tensor) for a in args[1:])


class _IdentitySet:
    """A set of live tensors by identity (a WeakSet would compare tensors with ``==``)."""

    def __init__(self):
        self._refs = {}

    def add(self, tensor) -> None:
        key = id(tensor)
        self._refs[key] = weakref.ref(tensor, lambda _, key=key: self._refs.pop(key, None))

    def __contains__(self, tensor) -> bool:
        ref = self._refs.get(id(tensor))
        return ref is not None and ref() is tensor


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...``; then ``reads.calls`` counts each kind by name and
    ``reads.syncs()`` the ones that are syncs on CUDA (``h2d_async`` is not)."""

    def __init__(self, host_tensors=()):
        """``host_tensors``: tensors made before counting that live on the host (an optimiser's
        step counters, which stay on the CPU on CUDA unless the optimiser is capturable or fused)."""
        super().__init__()
        self.calls = collections.Counter()
        self.where = collections.Counter()  # (kind, the innermost g2l / bench line) of each sync
        self._host = _IdentitySet()
        for tensor in host_tensors:
            self._host.add(tensor)
        self._from_numpy = None

    def __enter__(self):
        self._from_numpy = torch.from_numpy

        def from_numpy(array):
            out = self._from_numpy(array)
            self._host.add(out)
            return out

        torch.from_numpy = from_numpy
        return super().__enter__()

    def __exit__(self, *exc):
        torch.from_numpy = self._from_numpy
        return super().__exit__(*exc)

    @staticmethod
    def _caller(name: str) -> str:
        import traceback

        for frame in reversed(traceback.extract_stack()[:-2]):
            if "/g2l/" in frame.filename or "/bench/" in frame.filename or "/torch/optim/" in frame.filename:
                return f"{name} at {frame.filename.rsplit('/', 2)[-2]}/{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        return name

    def syncs(self) -> int:
        return sum(n for kind, n in self.calls.items() if kind in SYNCS)

    def is_host(self, tensor: torch.Tensor) -> bool:
        return tensor in self._host

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        inputs = list(_tensors(args)) + list(_tensors(kwargs))
        host_inputs = bool(inputs) and all(t in self._host for t in inputs)
        before = sum(self.calls.values())
        if name in EXPLICIT_READS + IMPLICIT_READS and not host_inputs:
            self.calls[name] += 1
        elif name in ("as_tensor", "tensor", "asarray") and kwargs.get("device") is not None and args and (
                not isinstance(args[0], torch.Tensor) or args[0] in self._host):
            self.calls["h2d"] += 1
        elif name in ("to", "cuda") and inputs and args and args[0] in self._host and (
                name == "cuda" or _names_device(args, kwargs)):
            self.calls["h2d_async" if kwargs.get("non_blocking") or (len(args) > 2 and args[2] is True) else "h2d"] += 1
        elif name == "copy_" and len(args) >= 2 and args[1] in self._host and args[0] not in self._host:
            self.calls["h2d_async" if kwargs.get("non_blocking") or (len(args) > 2 and args[2]) else "h2d"] += 1
        if sum(self.calls.values()) > before:
            self.where[self._caller(name)] += 1
        out = func(*args, **kwargs)
        made_on_host = name in FACTORIES and kwargs.get("device") is None and (
            not inputs or host_inputs) and not (name == "to" or name == "cuda")
        stays_on_host = host_inputs and not (name in ("to", "cuda") and _names_device(args, kwargs)) and name != "copy_"
        if made_on_host or stays_on_host:
            for tensor in _tensors(out):
                try:
                    self._host.add(tensor)
                except TypeError:
                    pass
        return out
