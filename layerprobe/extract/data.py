"""Feeding a task split to the model: preprocessed batches, in dataset order, from any item on.

An unreadable image does not raise inside a DataLoader worker (that would come back as a
multi-line traceback); the item comes back marked bad, with the one-line reason, and the
extraction loop decides whether to stop (naming the file) or to skip it (``--skip-bad``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from layerprobe.errors import DataError
from layerprobe.tasks.base import SplitData


class ItemRange(Dataset):
    """Items ``[start, stop)`` of a split as ``(image tensor (3, S, S), item index, error or "")``."""

    def __init__(
        self, split: SplitData, start: int, stop: int, transform: Callable, image_size: int
    ):
        self.split, self.start, self.stop = split, start, stop
        self.transform, self.image_size = transform, image_size

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        item = self.start + i
        try:
            image, _ = self.split[item]
        except DataError as err:
            return torch.zeros(3, self.image_size, self.image_size), item, str(err)
        return self.transform(image), item, ""


def batches(
    split: SplitData,
    start: int,
    stop: int,
    *,
    transform: Callable,
    image_size: int,
    batch_size: int,
    workers: int,
    pin_memory: bool,
) -> DataLoader:
    """A DataLoader over items ``[start, stop)`` in order: batches of ``(x (B,3,S,S), index (B,), errors)``."""
    return DataLoader(
        ItemRange(split, start, stop, transform, image_size),
        batch_size=batch_size,
        shuffle=False,  # rows are written in dataset order
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=False,
    )
