"""The sync counter of bench/host_reads.py: what it counts is what a GPU waits for."""

import numpy as np
import torch

from g2l.engine.logging import StepValues
from bench.host_reads import HostReads


def test_counts_reads_and_blocking_copies_not_host_work():
    device_tensor = torch.rand(3)  # made before counting: the device's
    with HostReads() as reads:
        torch.as_tensor(np.zeros(3), device="cpu")  # a blocking copy to the device
        torch.from_numpy(np.zeros(3)).to("cpu")  # another
        torch.from_numpy(np.zeros(3)).to("cpu", non_blocking=True)  # non-blocking: not a sync
        torch.zeros(3, device="cpu").copy_(torch.tensor([1.0, 2.0, 3.0]))  # a blocking copy
        torch.empty(4).numpy()  # host work
        torch.tensor([1, 2]).tolist()
        torch.as_tensor(device_tensor, device="cpu")  # already there
        device_tensor.sum().item()  # reads
        bool(device_tensor.sum() > 0)
        device_tensor.nonzero()
    assert reads.calls == {"h2d": 3, "h2d_async": 1, "item": 1, "__bool__": 1, "nonzero": 1}
    assert reads.syncs() == 6


def test_step_values_stay_on_the_device_until_read_once():
    values = StepValues()
    with HostReads() as reads:
        for step in range(1, 4):
            values.add(step, {"total": torch.tensor(float(step)), "bce": torch.tensor(0.5)},
                       torch.tensor(2.0 * step), {"base": 0.1})
    assert reads.syncs() == 0 and len(values) == 3
    with HostReads() as reads:
        rows = values.read()
    assert reads.syncs() == 1 and len(values) == 0 and values.read() == []
    assert rows == [(s, {"total": float(s), "bce": 0.5, "grad_norm": 2.0 * s}, {"base": 0.1}) for s in (1, 2, 3)]
