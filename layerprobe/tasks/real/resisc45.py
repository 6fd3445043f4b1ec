"""NWPU-RESISC45 remote-sensing scenes, read from the published archive layout.

Layout (the extracted ``NWPU-RESISC45.rar`` in ``DIR/resisc45``)::

    DIR/resisc45/NWPU-RESISC45/<class>/<class>_001.jpg

Splits as VTAB (TFDS has one 31,500-image split): 60% / 20% / 20% of one fixed permutation
(seed 0) of the sorted file list (18,900 / 6,300 / 6,300).
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    register_dataset,
    scan_class_folders,
    split_by_percent,
)

CLASSES = tuple(
    """airplane airport baseball_diamond basketball_court beach bridge chaparral church
    circular_farmland cloud commercial_area dense_residential desert forest freeway golf_course
    ground_track_field harbor industrial_area intersection island lake meadow medium_residential
    mobile_home_park mountain overpass palace parking_lot railway railway_station
    rectangular_farmland river roundabout runway sea_ice ship snowberg sparse_residential stadium
    storage_tank tennis_court terrace thermal_power_station wetland""".split()
)
URL = (
    "https://www.tensorflow.org/datasets/catalog/resisc45 (NWPU-RESISC45.rar, OneDrive link there)"
)


def _build(root: Path):
    paths, labels = scan_class_folders(root / "resisc45" / "NWPU-RESISC45", CLASSES)
    train, val, test = split_by_percent(FileSplit(paths, labels), 60, 20)
    return {"train": train, "val": val, "test": test}


register_dataset(
    RealDataset(
        name="resisc45",
        group="specialized",
        classes=CLASSES,
        layout=("resisc45/NWPU-RESISC45",),
        url=URL,
        build=_build,
        description="NWPU-RESISC45 aerial scenes (VTAB specialized)",
        splits_note="60/20/20 of all images, fixed permutation",
        vtab=True,
    )
)
