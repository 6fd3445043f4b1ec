"""What defines a built-in task: its classes, per-class counts and a batch generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

SPLITS = ("train", "val", "test")


class Generator(Protocol):
    """Draws images of given labels: ``generate(labels, rng, *, size, split)``."""

    def __call__(
        self, labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
    ) -> np.ndarray:
        """Images showing ``labels``.

        Parameters
        ----------
        labels : (N,) int64 class ids.
        rng : the generator every random choice is drawn from (seeded per chunk).
        size : the image side S in pixels.
        split : ``train``, ``val`` or ``test`` (generators with a fixed pool of sources keep
            the splits apart).

        Returns
        -------
        (N, S, S, 3) uint8 images.
        """


@dataclass(frozen=True)
class BuiltinSpec:
    """One built-in task.

    Parameters
    ----------
    name : name without the ``builtin/`` prefix.
    group : ``natural``, ``specialized``, ``structured`` or ``upstream``.
    classes : class names, label i is ``classes[i]``.
    generate : draws images for a batch of labels (see :data:`Generator`).
    summary : what the task asks, one line (counts per class are appended).
    per_class : images per class in (train, val, test); every split is exactly balanced.
    whole_split : generate a split in one call (sources that are used once each, without
        replacement) instead of in fixed-size chunks.
    """

    name: str
    group: str
    classes: tuple[str, ...]
    generate: Generator
    summary: str
    per_class: tuple[int, int, int] = (50, 20, 50)
    whole_split: bool = False

    @property
    def description(self) -> str:
        tr, va, te = self.per_class
        return (
            f"{self.summary} [{len(self.classes)} classes; {tr}/{va}/{te} per class train/val/test]"
        )

    def split_size(self, split: str) -> int:
        return self.per_class[SPLITS.index(split)] * len(self.classes)
