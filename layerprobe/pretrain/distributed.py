"""Training under ``torchrun``: the process group, sums across ranks, who writes.

``torchrun --nproc-per-node N -m layerprobe pretrain ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each joins one process group (``nccl`` on CUDA, ``gloo``
on the CPU), trains a ``DistributedDataParallel`` copy of the model on its share of every
batch, and metrics are summed across ranks. Only rank 0 writes files; the others wait at a
barrier until they are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from layerprobe.extract import distributed as _group
from layerprobe.extract.distributed import is_main_process, stop

__all__ = ["Ranks", "is_main_process", "start", "stop"]


@dataclass(frozen=True)
class Ranks(_group.Ranks):
    """This process's place among the run's processes, with the reductions training needs."""

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
    return _group.start(device_type, "training", Ranks)
