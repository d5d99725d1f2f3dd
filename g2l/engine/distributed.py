"""Process-group helpers: one process or several under ``torchrun`` (gloo on CPU, NCCL on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str = "auto", local_rank: int = 0, *, setting: str = "train.device") -> torch.device:
    """``auto`` -> this process's GPU when there is one, else the CPU. ``setting`` names where
    ``name`` came from (``--device`` for the tools) in the error for a device that is not there."""
    from g2l.config import ConfigError

    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{setting} must be auto, cpu, cuda or cuda:<index>, got '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting} is '{name}' but no CUDA device is available; use auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{setting} is '{name}' but there are only {torch.cuda.device_count()} CUDA devices; use auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{setting} is '{name}' but MPS is not available here; use auto or cpu")
    return device


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment, or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, device)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    _, world = rank_and_world()
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    if rank_and_world()[1] > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= rank_and_world()[1]
    return values


def sync_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank."""
    if rank_and_world()[1] > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src)


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
