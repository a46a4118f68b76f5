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

import os
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


def launched_as_main() -> bool:
    """Before any process group exists: whether this process is the launch's first (global rank 0), from the
    variables launchers set for the others (Lightning: LOCAL_RANK, NODE_RANK; torchrun: RANK; SLURM:
    SLURM_PROCID). Only the first prepares the run folder; the others reuse what it wrote."""
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def check_batch_split(batch: int, size: int) -> None:
    """Refuse a global batch of ``batch`` prompts that ``size`` processes cannot share evenly (a group never
    spans processes, and every process must run the same number of micro-batches)."""
    if batch % size:
        raise ValueError(
            f"trainer.global_batch_size: {batch} prompts per step do not split evenly over {size} processes; "
            f"use a multiple of {size}"
        )


def require_one_process(devices: int | str, num_nodes: int, command: str) -> None:
    """Refuse several processes where a command runs more than one stage per process (Lightning's launcher
    would start every stage again in each process): ``command`` runs them one after another in one."""
    many = (
        num_nodes > 1
        or (isinstance(devices, int) and devices > 1)
        or (isinstance(devices, str) and devices not in ("1", "auto"))
    )
    if many:
        raise ValueError(
            f"{command} runs in one process (trainer.devices={devices}, trainer.num_nodes={num_nodes}); "
            "train with several processes through 'mgfrec fit', then evaluate its run folder"
        )


def _device() -> torch.device:
    """Where collectives take their tensors: the current CUDA device under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(values: Sequence[float], op: dist.ReduceOp) -> list[float]:
    if world()[1] == 1:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=op)
    return t.cpu().tolist()


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums over processes (float64)."""
    return _all_reduce(values, dist.ReduceOp.SUM)


def all_max(values: Sequence[float]) -> list[float]:
    """Element-wise maxima over processes."""
    return _all_reduce(values, dist.ReduceOp.MAX)


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
    """The largest difference, over processes, of each parameter's sum (accumulated in float64): 0.0 when every
    process holds the same weights, as DDP must keep them; NaN when a sum is NaN; 0.0 in one process. Under
    DeepSpeed, call it where the parameters are whole; the gathered copies are then equal by construction,
    so the check means something for replicated (DDP) training only."""
    rank, size = world()
    if size == 1:
        return 0.0
    sums = torch.stack([p.detach().sum(dtype=torch.float64) for p in parameters]).reshape(1, -1)
    every = all_gather_rows(sums)
    return float((every - every[0]).abs().max())
