"""UC Merced land use (21 classes x 100 aerial images of 256 px).

Layout (the extracted ``UCMerced_LandUse.zip`` in ``DIR/uc_merced``)::

    DIR/uc_merced/UCMerced_LandUse/Images/<class>/<class>00.tif ...

Splits: big_vision's few-shot evaluator uses TFDS ``train[:1000]`` for shots and
``train[1000:]`` for test; here ``train`` / ``val`` = the first 800 / next 200 of one fixed
permutation (seed 0) and ``test`` = the other 1,100.
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

CLASSES = tuple(
    """agricultural airplane baseballdiamond beach buildings chaparral denseresidential forest freeway
    golfcourse harbor intersection mediumresidential mobilehomepark overpass parkinglot river runway
    sparseresidential storagetanks tenniscourt""".split()
)
URL = "http://weegee.vision.ucmerced.edu/datasets/landuse.html (UCMerced_LandUse.zip)"


def _build(root: Path):
    paths, labels = scan_class_folders(root / "uc_merced" / "UCMerced_LandUse" / "Images", CLASSES)
    everything = FileSplit(paths, labels)
    train, val, test = split_by_count(everything, 800, 200)
    return {"train": train, "val": val, "test": test}


register_dataset(
    RealDataset(
        name="uc_merced",
        group="specialized",
        classes=CLASSES,
        layout=("uc_merced/UCMerced_LandUse/Images",),
        url=URL,
        build=_build,
        description="UC Merced land use, aerial",
        splits_note="800 train / 200 val / 1100 test, fixed permutation",
    )
)
