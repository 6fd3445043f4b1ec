"""Training under ``torchrun``: the process group, sums across ranks, who writes.

``torchrun --nproc-per-node N -m layerprobe pretrain ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each joins one process group (``nccl`` on CUDA, ``gloo``
on the CPU), trains a ``DistributedDataParallel`` copy of the model on its share of every
batch, and metrics are summed across ranks. Only rank 0 writes files; the others wait at a
barrier until they are written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from layerprobe.errors import ConfigError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: list[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
        """Element-wise sum over ranks (float64), as a tensor on ``device``."""
        t = torch.as_tensor(values, dtype=torch.float64, device=device)
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def min(self, value: int, device: torch.device) -> int:
        """The smallest ``value`` over ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def agree(self, value):
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def start(device_type: str) -> Ranks:
    """Join the ``torchrun`` process group when started by torchrun, else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if "MASTER_ADDR" not in os.environ:
        raise ConfigError(
            "WORLD_SIZE is set but MASTER_ADDR is not; start multi-process training with torchrun"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, owns)


def stop(ranks: Ranks) -> None:
    """Leave the process group if :func:`start` created it."""
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0 of a ``torchrun`` job, and in an ordinary single process."""
    return int(os.environ.get("RANK", "0")) == 0
