"""What a task is: a name, a group, its classes and splits, and a loader per split.

A split is a sequence of ``(PIL.Image in RGB, int label)`` with a ``labels`` array, so
that few-shot sampling and cache bookkeeping never need to decode an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from layerprobe.errors import DataError

GROUPS = ("natural", "specialized", "structured", "upstream")


class SplitData:
    """One split of a task: ``len()``, ``[i] -> (PIL.Image RGB, label)``, ``labels`` (N,) int64.

    Subclasses implement :meth:`load_image` and, where items are files,
    :meth:`describe_item` so that errors can name the file.
    """

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return self.load_image(int(i)), int(self.labels[i])

    def load_image(self, i: int) -> Image.Image:
        raise NotImplementedError

    def describe_item(self, i: int) -> str:
        """A human name for item ``i`` (a file path where there is one)."""
        return f"item {i}"


class FileSplit(SplitData):
    """A split whose items are image files on disk.

    Parameters
    ----------
    paths : (N,) image files.
    labels : (N,) class ids.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[int]):
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)

    def load_image(self, i: int) -> Image.Image:
        return open_image(self.paths[i])

    def describe_item(self, i: int) -> str:
        return self.paths[i]


class ArraySplit(SplitData):
    """A split held in memory.

    Parameters
    ----------
    images : uint8 images, (N, H, W, 3) colour or (N, H, W) grey.
    labels : (N,) class ids.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int]):
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.images[i], dtype=np.uint8)).convert("RGB")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB.

    Parameters
    ----------
    path : an image file Pillow can decode.

    Returns
    -------
    PIL.Image.Image
        The decoded image in RGB mode, (H, W) pixels.

    Raises
    ------
    DataError
        The file cannot be decoded (or claims too many pixels); the message names it.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except Image.DecompressionBombError as err:
        raise DataError(
            f"image {path} claims more pixels than Pillow will decode ({err}); it may be a "
            "decompression bomb: remove it, or pass --skip-bad to leave it out"
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"cannot read image {path}: {err}; remove or replace the file (or pass --skip-bad)"
        ) from err


@dataclass
class Task:
    """A classification task.

    Parameters
    ----------
    name : registry name, e.g. ``"cifar100"`` or ``"builtin/digits"``.
    group : one of ``natural``, ``specialized``, ``structured``, ``upstream``.
    classes : class names; ``len(classes)`` is the number of classes.
    splits : split names this task provides, e.g. ``("train", "val", "test")``.
    loader : ``loader(split, data_root) -> SplitData``; raises :class:`DataError` when data is missing.
    description : one line shown by ``layerprobe tasks``.
    locate : ``locate(data_root) -> (found, what)``: whether the data is present, and if not,
        what was looked for (a path and where the data is published).
    count : optional ``count(split, data_root) -> int``, the size of a split without building
        it (used by ``layerprobe tasks``); without it :meth:`split_sizes` calls the loader,
        which must then be cheap (labels only, no image decoding).
    resize : the resize mode its reference protocol uses (``squash`` for VTAB and non-square
        datasets, see ``layerprobe.backbones.RESIZE_MODES``); None = the model's own.
    fingerprinter : optional ``fingerprinter(split, content) -> str``, what identifies the
        task's images beyond its name (see :meth:`fingerprint`); None = the name alone.
    extra : descriptive facts shown or checked elsewhere (data URL, layout, split convention,
        the built-in suite's settings); plain values, no callables.
    """

    name: str
    group: str
    classes: Sequence[str]
    splits: tuple[str, ...]
    loader: Callable[[str, Path | None], SplitData]
    description: str = ""
    locate: Callable[[Path | None], tuple[bool, str]] | None = None
    extra: dict = field(default_factory=dict)
    count: Callable[[str, Path | None], int] | None = None
    resize: str | None = None
    fingerprinter: Callable[[str | None, bool], str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self, split: str, data_root: str | os.PathLike | None = None) -> SplitData:
        """Load one split; raises :class:`DataError` for an unknown split or missing data."""
        if split not in self.splits:
            raise DataError(
                f"task {self.name!r} has no split {split!r}; it has {', '.join(self.splits)}"
            )
        data = self.loader(split, resolve_data_root(data_root))
        bad = (data.labels < 0) | (data.labels >= self.num_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"task {self.name!r} split {split!r}: label {int(data.labels[i])} of "
                f"{data.describe_item(i)} is outside 0..{self.num_classes - 1}; check the data"
            )
        return data

    def split_sizes(self, data_root: str | os.PathLike | None = None) -> dict[str, int]:
        """Number of examples in each split, without decoding images."""
        root = resolve_data_root(data_root)
        if self.count is not None:
            return {s: int(self.count(s, root)) for s in self.splits}
        return {s: len(self.loader(s, root)) for s in self.splits}

    def fingerprint(self, split: str | None = None, content: bool = False) -> str:
        """What identifies the task's images beyond its name ('' when only the name does).

        Generated tasks depend on settings (the built-in suite's image size and seed); folder
        tasks on their files (names, sizes and modification times, or with ``content`` a hash
        of every byte). A feature cache records this per split, so that changed images are
        never served stale features.
        """
        return "" if self.fingerprinter is None else str(self.fingerprinter(split, content))

    def find(self, data_root: str | os.PathLike | None = None) -> tuple[bool, str]:
        """``(found, what)``: whether this task's data is present under the data root."""
        if self.locate is None:
            return True, ""
        return self.locate(resolve_data_root(data_root))


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    """The data root: the argument, else ``$LAYERPROBE_DATA``, else None.

    Parameters
    ----------
    data_root : the folder given by the user (``--data-root``), or None.

    Returns
    -------
    Path or None
        The folder with ``~`` expanded; None when neither the argument nor the variable is set.
    """
    if data_root is None:
        data_root = os.environ.get("LAYERPROBE_DATA") or None
    return Path(data_root).expanduser() if data_root is not None else None
