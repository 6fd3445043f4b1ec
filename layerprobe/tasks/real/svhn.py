"""SVHN (cropped digits), read with torchvision's ``SVHN`` (``download=False``).

Layout (the two .mat files of format 2, in a folder ``svhn``)::

    DIR/svhn/train_32x32.mat
    DIR/svhn/test_32x32.mat

Splits as VTAB: ``train`` = 90% of the official train set (65,931), ``val`` = the other 10%
(7,326), ``test`` = the official test set (26,032). Label 10 in the files is digit 0 (torchvision
maps it). torchvision's md5 check is replaced by an existence check.
"""

from __future__ import annotations

import os
from pathlib import Path

from layerprobe.tasks.base import ArraySplit
from layerprobe.tasks.real._common import RealDataset, reading, register_dataset, split_by_percent

URL = "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat, test_32x32.mat)"


def _build(root: Path):
    from torchvision.datasets import SVHN

    class Existing(SVHN):
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

    out = {}
    for split in ("train", "test"):
        with reading(root / "svhn" / f"{split}_32x32.mat", URL):
            ds = Existing(str(root / "svhn"), split=split, download=False)
        out[split] = ArraySplit(
            ds.data.transpose(0, 2, 3, 1), ds.labels
        )  # (N, 3, H, W) -> (N, H, W, 3)
    train, val = split_by_percent(out["train"], 90)
    return {"train": train, "val": val, "test": out["test"]}


def _count(root: Path) -> dict[str, int]:
    """Split sizes from the .mat headers (``whosmat``), without loading the images."""
    import scipy.io as sio

    n = {}
    for split in ("train", "test"):
        path = root / "svhn" / f"{split}_32x32.mat"
        with reading(path, URL):
            shapes = dict((name, shape) for name, shape, _ in sio.whosmat(path))
        n[split] = int(shapes["y"][0])
    train = 90 * n["train"] // 100
    return {"train": train, "val": n["train"] - train, "test": n["test"]}


register_dataset(
    RealDataset(
        name="svhn",
        group="natural",
        classes=tuple(str(d) for d in range(10)),
        layout=("svhn/train_32x32.mat", "svhn/test_32x32.mat"),
        url=URL,
        build=_build,
        count=_count,
        description="SVHN house-number digits (VTAB natural)",
        splits_note="train 90% / val 10% of official train, test = official test",
        vtab=True,
    )
)
