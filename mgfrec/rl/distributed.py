"""Data parallelism for GRPO: which share of a step each process takes, and how their numbers combine.

With ``trainer.devices`` > 1 (or several nodes) Lightning runs one process per device. A GRPO step then is:

* every process draws the same global batch of ``trainer.global_batch_size`` prompts and takes its
  shard ``batch[rank::world]`` (the global batch must divide evenly: a group never spans processes, so
  advantages stay local);
* rollouts are seeded per process (``seed * world + rank``; one process keeps the single-process seed);
* the loss of each process is normalised by the *global* token (or trajectory) count and multiplied by the
  number of processes, because DDP and DeepSpeed average gradients over processes: the averaged gradient is
  then the gradient of the single-process loss over the whole global batch;
* logged numbers are over the whole global batch: per-trajectory facts are gathered, sums and token-weighted
  means are summed, times are the slowest process's; one process (global rank 0) writes the files.

The functions here are plain ``torch.distributed`` calls that reduce to the identity in one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, number of processes)``; ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(items: Sequence[T], rank: int, size: int) -> list[T]:
    """This process's share of ``items``: every ``size``-th one from ``rank``."""
    return list(items[rank::size])


def _device() -> torch.device:
    """Where collectives take their tensors: the current CUDA device under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums over processes (float64)."""
    rank, size = world()
    if size == 1:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_max(values: Sequence[float]) -> list[float]:
    """Element-wise maxima over processes."""
    rank, size = world()
    if size == 1:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().tolist()


def all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Rows of every process, rank 0's first (each process gives the same number of rows)."""
    rank, size = world()
    if size == 1:
        return rows
    local = rows.to(_device(), torch.float64)
    parts = [torch.empty_like(local) for _ in range(size)]
    dist.all_gather(parts, local)
    return torch.cat(parts).cpu().to(rows.dtype)


def barrier() -> None:
    """Wait for every process; nothing in one process."""
    if world()[1] > 1:
        dist.barrier()


def replica_drift(parameters: Sequence[torch.Tensor]) -> float:
    """The largest difference, over processes, of each parameter's sum (float64): 0.0 when every process holds
    the same weights, as data parallelism must keep them; 0.0 in one process. Call it where the parameters
    are whole (under ZeRO-3 inside :meth:`~mgfrec.rl.module.GRPOModule.full_weights`)."""
    rank, size = world()
    if size == 1:
        return 0.0
    sums = torch.stack([p.detach().to(torch.float64).sum() for p in parameters]).reshape(1, -1)
    every = all_gather_rows(sums)
    return float((every - every[0]).abs().max())
