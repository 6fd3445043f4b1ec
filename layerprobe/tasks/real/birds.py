"""Caltech-UCSD Birds-200-2011 (CUB), read from the published archive layout.

Layout (the extracted ``CUB_200_2011.tgz``)::

    DIR/CUB_200_2011/images.txt               "<id> <class folder>/<file>.jpg"
    DIR/CUB_200_2011/image_class_labels.txt   "<id> <class 1..200>"
    DIR/CUB_200_2011/train_test_split.txt     "<id> <1 = train, 0 = test>"
    DIR/CUB_200_2011/images/<class folder>/<file>.jpg

Splits as task_adaptation's ``cub2011``: ``train`` = 90% of the official train set (5,994),
``val`` = the other 10%, ``test`` = the official test set (5,794). Class names are in
``classes.txt``; here listed as indices 0..199.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    index_names,
    reading,
    register_dataset,
    split_by_percent,
)

URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/ (CUB_200_2011.tgz)"


def _table(path: Path) -> dict[int, str]:
    """``<id> <value>`` lines as {id: value}."""
    out = {}
    with reading(path, URL), open(path) as f:
        for line in f:
            if line.strip():
                key, value = line.split(maxsplit=1)
                out[int(key)] = value.strip()
    return out


def _build(root: Path):
    base = root / "CUB_200_2011"
    images = _table(base / "images.txt")
    labels = _table(base / "image_class_labels.txt")
    is_train = _table(base / "train_test_split.txt")
    missing = sorted(set(images) - (set(labels) & set(is_train)))
    if missing:
        raise DataError(
            f"{base}: image id {missing[0]} has no label or split entry; the metadata files disagree"
        )
    out = {}
    for name, flag in (("train", "1"), ("test", "0")):
        ids = [i for i in sorted(images) if is_train[i] == flag]
        out[name] = FileSplit(
            [base / "images" / images[i] for i in ids],
            np.asarray([int(labels[i]) - 1 for i in ids]),
        )
    train, val = split_by_percent(out["train"], 90)
    return {"train": train, "val": val, "test": out["test"]}


register_dataset(
    RealDataset(
        name="birds",
        square=False,
        group="natural",
        classes=index_names(200),
        layout=tuple(
            f"CUB_200_2011/{f}"
            for f in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "images")
        ),
        url=URL,
        build=_build,
        description="Caltech-UCSD Birds-200-2011 (CUB)",
        splits_note="train 90% / val 10% of official train, test = official test",
    )
)
