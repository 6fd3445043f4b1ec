"""Stanford Cars (196 classes), read with torchvision's ``StanfordCars``.

Layout (as torchvision expects; the original site is gone, the files circulate as
``car_devkit.tgz``, ``cars_train.tgz``, ``cars_test.tgz`` and ``cars_test_annos_withlabels.mat``)::

    DIR/stanford_cars/devkit/{cars_train_annos.mat, cars_meta.mat}
    DIR/stanford_cars/cars_train/00001.jpg ...
    DIR/stanford_cars/cars_test/00001.jpg ...
    DIR/stanford_cars/cars_test_annos_withlabels.mat

Splits as task_adaptation's ``cars``: ``train`` = 80% of the official train set, ``val`` = the
other 20%, ``test`` = the official test set (8,041). Class names are in ``cars_meta.mat``; here
listed as indices 0..195.
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    index_names,
    reading,
    register_dataset,
    split_by_percent,
    torchvision_dataset,
)

URL = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (mirrors: Kaggle 'stanford-cars-dataset')"


def _build(root: Path):
    from torchvision.datasets import StanfordCars

    out = {}
    for split in ("train", "test"):
        with reading(root / "stanford_cars", URL):
            ds = torchvision_dataset(
                StanfordCars, root / "stanford_cars", URL, root=str(root), split=split
            )
        out[split] = FileSplit([p for p, _ in ds._samples], [int(t) for _, t in ds._samples])
    train, val = split_by_percent(out["train"], 80)
    return {"train": train, "val": val, "test": out["test"]}


register_dataset(
    RealDataset(
        name="cars",
        square=False,
        group="natural",
        classes=index_names(196),
        layout=(
            "stanford_cars/devkit/cars_train_annos.mat",
            "stanford_cars/devkit/cars_meta.mat",
            "stanford_cars/cars_train",
            "stanford_cars/cars_test",
            "stanford_cars/cars_test_annos_withlabels.mat",
        ),
        url=URL,
        build=_build,
        description="Stanford Cars, 196 models",
        splits_note="train 80% / val 20% of official train, test = official test",
    )
)
