"""smallNORB azimuth and elevation (VTAB structured), read from the published binary files.

Layout (the gunzipped files of the NORB-small release, in ``DIR/smallnorb``)::

    DIR/smallnorb/smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat
    DIR/smallnorb/smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat

Each file is a binary matrix (not MATLAB): int32 magic (0x1E3D4C55 uint8, 0x1E3D4C54 int32),
int32 ndim, max(ndim, 3) int32 dims, then the data, little-endian. ``dat`` is (N, 2, 96, 96)
stereo pairs, of which the first image is used (as TFDS); ``info`` is (N, 4): instance,
elevation (0-8), azimuth (0, 2, ..., 34), lighting.

Labels (TFDS ``smallnorb`` as VTAB uses it): ``smallnorb_azimuth`` = azimuth / 2 (18 classes),
``smallnorb_elevation`` = elevation (9 classes).

Splits as VTAB: ``train`` = the official training file (24,300); ``val`` / ``test`` = two halves
of the official test file (12,150 each), cut from one fixed permutation (seed 0).
Images are memory-mapped: nothing is read until an image is asked for.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from layerprobe.errors import DataError
from layerprobe.tasks.real._common import (
    LazyArraySplit,
    RealDataset,
    reading,
    register_dataset,
    split_by_percent,
)

URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
STEMS = {
    "train": "smallnorb-5x46789x9x18x6x2x96x96-training",
    "test": "smallnorb-5x01235x9x18x6x2x96x96-testing",
}
MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}


def read_norb(path: Path, mmap: bool = False) -> np.ndarray:
    """A NORB binary matrix file as an array (memory-mapped when ``mmap``)."""
    with reading(path, URL):
        header = np.fromfile(path, dtype="<i4", count=2)
        if len(header) < 2 or int(header[0]) not in MAGIC:
            raise DataError(
                f"{path} is not a NORB matrix file (bad magic number); download it again from {URL}"
            )
        magic, ndim = int(header[0]), int(header[1])
        dims = np.fromfile(path, dtype="<i4", count=2 + max(ndim, 3))[2 : 2 + ndim]
        offset = 4 * (2 + max(ndim, 3))
        dtype = np.dtype(MAGIC[magic]).newbyteorder("<")
        shape = tuple(int(d) for d in dims)
        if path.stat().st_size < offset + int(np.prod(shape)) * dtype.itemsize:
            raise DataError(f"{path} is truncated (shape {shape}); download it again from {URL}")
        if mmap:
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        return np.fromfile(path, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(
            shape
        )


def _part(root: Path, split: str, column: int, divide: int) -> LazyArraySplit:
    stem = root / "smallnorb" / STEMS[split]
    info = read_norb(Path(f"{stem}-info.mat"))
    labels = info[:, column] // divide
    return LazyArraySplit(functools.partial(_left_images, Path(f"{stem}-dat.mat")), labels)


def _left_images(path: Path) -> np.ndarray:
    """(N, 96, 96) memory-mapped left images of a ``-dat`` file (TFDS's ``image``)."""
    return read_norb(path, mmap=True)[:, 0]


def _builder(column: int, divide: int):
    def build(root: Path):
        val, test = split_by_percent(_part(root, "test", column, divide), 50)
        return {"train": _part(root, "train", column, divide), "val": val, "test": test}

    return build


LAYOUT = tuple(f"smallnorb/{STEMS[s]}-{k}.mat" for s in ("train", "test") for k in ("dat", "info"))
register_dataset(
    RealDataset(
        name="smallnorb_azimuth",
        group="structured",
        classes=tuple(f"{20 * i}deg" for i in range(18)),
        layout=LAYOUT,
        url=URL,
        build=_builder(column=2, divide=2),
        description="smallNORB: azimuth of the toy, 18 classes (VTAB structured)",
        splits_note="official train; official test halved into val/test",
        vtab=True,
    )
)
register_dataset(
    RealDataset(
        name="smallnorb_elevation",
        group="structured",
        classes=tuple(f"{30 + 5 * i}deg" for i in range(9)),
        layout=LAYOUT,
        url=URL,
        build=_builder(column=1, divide=1),
        description="smallNORB: camera elevation, 9 classes (VTAB structured)",
        splits_note="official train; official test halved into val/test",
        vtab=True,
    )
)
