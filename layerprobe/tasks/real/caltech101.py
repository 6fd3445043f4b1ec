"""Caltech-101 with VTAB's 102 classes (the 101 categories plus ``BACKGROUND_Google``).

Layout (torchvision's ``Caltech101`` layout; torchvision's class drops the background class that
TFDS and VTAB keep, so the folders are read directly)::

    DIR/caltech101/101_ObjectCategories/<class>/image_0001.jpg

Splits: TFDS's official train split is 30 images per class (3,060), the rest is the test split
(6,084); the 30 are drawn as TFDS does, ``numpy.random.seed(1234)`` then
``choice(file names, 30, replace=False)`` per class folder, here with folders and files in
sorted order (TFDS takes them in listing order). VTAB then takes 90% of that train split as
``train`` (2,754) and 10% as ``val`` (306), from one fixed permutation. Class names are the folder
names, sorted; here they are listed as indices 0..101.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    SubsetSplit,
    index_names,
    register_dataset,
    scan_class_folders,
    split_by_percent,
)

URL = "https://data.caltech.edu/records/mzrjq-6wc02 (101_ObjectCategories.tar.gz)"
TRAIN_PER_CLASS = 30


def _build(root: Path):
    top = root / "caltech101" / "101_ObjectCategories"
    paths, labels = scan_class_folders(top)
    rng = np.random.RandomState(1234)  # TFDS's legacy stream: np.random.seed(1234)
    train_idx = []
    for c in np.unique(labels):  # class folders in sorted order
        idx = np.where(labels == c)[0]
        if len(idx) < TRAIN_PER_CLASS:
            folder = Path(paths[idx[0]]).parent
            raise DataError(
                f"{folder} has {len(idx)} images, fewer than the {TRAIN_PER_CLASS} of the train split"
            )
        train_idx.append(rng.choice(idx, TRAIN_PER_CLASS, replace=False))
    is_train = np.zeros(len(labels), bool)
    is_train[np.concatenate(train_idx)] = True
    everything = FileSplit(paths, labels)
    train, val = split_by_percent(SubsetSplit(everything, np.where(is_train)[0]), 90)
    return {"train": train, "val": val, "test": SubsetSplit(everything, np.where(~is_train)[0])}


register_dataset(
    RealDataset(
        name="caltech101",
        square=False,
        group="natural",
        classes=index_names(102),
        layout=("caltech101/101_ObjectCategories",),
        url=URL,
        build=_build,
        description="Caltech-101 objects, 102 classes incl. background (VTAB natural)",
        splits_note="30/class drawn as TFDS (90% train, 10% val), rest test",
        vtab=True,
    )
)
