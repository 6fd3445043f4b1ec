"""Splitting an extraction across ``torchrun`` ranks.

``torchrun --nproc-per-node N -m layerprobe extract ...`` starts N processes with ``RANK`` and
``WORLD_SIZE`` set. Each rank extracts a contiguous range of the split's items into its own
shard file; after a barrier rank 0 concatenates the shards (in rank order) into the one cache
file, which then reads exactly like a single-process one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from layerprobe.errors import ConfigError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the extraction's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # whether we started the process group (and must end it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, num_items: int) -> tuple[int, int]:
        """The contiguous item range ``[start, stop)`` of this rank; ranks differ by at most one item."""
        return num_items * self.rank // self.world, num_items * (self.rank + 1) // self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order (a list of one on a single process)."""
        if self.world == 1:
            return [value]
        out = [None] * self.world
        dist.all_gather_object(out, value)
        return out


def is_main_process() -> bool:
    """Whether this process writes the shared outputs.

    Returns
    -------
    bool
        True on rank 0 of a ``torchrun`` job (``$RANK``), and in an ordinary single process.
    """
    return int(os.environ.get("RANK", "0")) == 0


def start(device_type: str, what: str = "extraction", ranks: type[Ranks] = Ranks) -> Ranks:
    """Join the ``torchrun`` process group if this is one of its processes.

    Uses ``nccl`` on CUDA and ``gloo`` on the CPU; a group someone else started is reused.
    ``what`` names the work in messages; ``ranks`` is the :class:`Ranks` (sub)class returned.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ranks()
    if "MASTER_ADDR" not in os.environ:
        raise ConfigError(
            f"WORLD_SIZE is set but MASTER_ADDR is not; start multi-process {what} with torchrun"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return ranks(dist.get_rank(), dist.get_world_size(), local_rank, owns)


def stop(ranks: Ranks) -> None:
    """Leave the process group if :func:`start` created it."""
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()
