"""Colorectal histology (Kather et al. 2016, 5,000 tiles of 150 px, 8 tissue classes).

Layout (the extracted ``Kather_texture_2016_image_tiles_5000.zip`` in ``DIR/col_hist``)::

    DIR/col_hist/Kather_texture_2016_image_tiles_5000/01_TUMOR/<tile>.tif ... 08_EMPTY/

Splits: big_vision's few-shot evaluator uses TFDS ``train[:2000]`` for shots and
``train[2000:]`` for test; here ``train`` / ``val`` = the first 1,600 / next 400 of one fixed
permutation (seed 0), so that λ is chosen inside big_vision's train part, and ``test`` = the
other 3,000.
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    register_dataset,
    scan_class_folders,
    split_by_count,
)

CLASSES = (
    "01_TUMOR",
    "02_STROMA",
    "03_COMPLEX",
    "04_LYMPHO",
    "05_DEBRIS",
    "06_MUCOSA",
    "07_ADIPOSE",
    "08_EMPTY",
)
URL = "https://zenodo.org/records/53169 (Kather_texture_2016_image_tiles_5000.zip)"


def _build(root: Path):
    paths, labels = scan_class_folders(
        root / "col_hist" / "Kather_texture_2016_image_tiles_5000", CLASSES
    )
    everything = FileSplit(paths, labels)
    train, val, test = split_by_count(everything, 1600, 400)
    return {"train": train, "val": val, "test": test}


register_dataset(
    RealDataset(
        name="col_hist",
        group="specialized",
        classes=CLASSES,
        layout=("col_hist/Kather_texture_2016_image_tiles_5000",),
        url=URL,
        build=_build,
        description="Colorectal cancer histology tiles, 8 tissue types",
        splits_note="1600 train / 400 val / 3000 test, fixed permutation",
    )
)
