"""dSprites x-position and orientation (VTAB structured), read from the published ``.npz``.

Layout::

    DIR/dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz
        imgs (737280, 64, 64) uint8 in {0, 1}; latents_classes (737280, 6) int:
        color, shape, scale, orientation (40 values), posX (32), posY (32)

Labels (task_adaptation ``dsprites.py``): an attribute with V values grouped into C classes,
label = floor(value / (V / C)): ``dsprites_location`` = posX, 32 -> 16 classes;
``dsprites_orientation`` = orientation, 40 -> 16 classes.

Splits as VTAB (one split in TFDS): 80% / 10% / 10% of one fixed permutation (seed 0); the file
is ordered by latent factors, so taking the first 80% unshuffled would drop whole shapes.
Only the labels are read for listing and sampling; the 3 GB image array is streamed out of the
archive on the first image read and kept as packed bits (377 MB), shared by forked workers.
"""

from __future__ import annotations

import functools
import zipfile
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

URL = "https://github.com/google-deepmind/dsprites-dataset (dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz)"
FILE = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
ORIENTATION, POS_X = 3, 4  # columns of latents_classes
NUM_VALUES = {ORIENTATION: 40, POS_X: 32}
NUM_CLASSES = 16


def bin_attribute(
    values: np.ndarray, num_values: int, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """floor(value / (num_values / num_classes)), as task_adaptation groups nearby values."""
    return np.floor(values / (num_values / num_classes)).astype(np.int64)


class PackedImages:
    """Binary images kept as packed bits (8x smaller: 377 MB instead of 3 GB for dSprites)."""

    def __init__(self, packed: np.ndarray, shape: tuple[int, int]):
        self.packed, self.shape = packed, shape

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, row: int) -> np.ndarray:
        h, w = self.shape
        return np.unpackbits(self.packed[row], count=h * w).reshape(h, w)


@functools.lru_cache(maxsize=1)
def _images(path: str, chunk: int = 16384) -> PackedImages:
    """Stream ``imgs`` out of the .npz in chunks of rows and pack its 0/1 pixels into bits, so
    the 3 GB array is never held in memory at once."""
    with reading(path, URL), zipfile.ZipFile(path) as z, z.open("imgs.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        if fortran or dtype != np.uint8 or len(shape) != 3:
            raise DataError(f"{path}: imgs is {dtype} {shape}, expected C-ordered uint8 (N, H, W)")
        n, h, w = shape
        packed = np.empty((n, (h * w + 7) // 8), np.uint8)
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            block = np.frombuffer(f.read(rows * h * w), np.uint8)
            if block.size != rows * h * w:
                raise DataError(f"{path} is truncated; download it again from {URL}")
            packed[start : start + rows] = np.packbits(block.reshape(rows, h * w) != 0, axis=1)
    return PackedImages(packed, (h, w))


def _builder(column: int):
    def build(root: Path):
        path = root / FILE
        with reading(path, URL), np.load(path) as z:
            latents = np.asarray(z["latents_classes"])
        labels = bin_attribute(latents[:, column], NUM_VALUES[column])
        everything = LazyArraySplit(functools.partial(_images, str(path)), labels, scale=255)
        train, val, test = split_by_percent(everything, 80, 10)
        return {"train": train, "val": val, "test": test}

    return build


for _name, _column, _what in (
    ("dsprites_location", POS_X, "x position of the sprite, 16 bins"),
    ("dsprites_orientation", ORIENTATION, "orientation of the sprite, 16 bins"),
):
    register_dataset(
        RealDataset(
            name=_name,
            group="structured",
            classes=tuple(str(i) for i in range(NUM_CLASSES)),
            layout=(FILE,),
            url=URL,
            build=_builder(_column),
            description=f"dSprites: {_what} (VTAB structured)",
            splits_note="80/10/10, fixed permutation",
            vtab=True,
        )
    )
