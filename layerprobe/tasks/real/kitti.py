"""KITTI closest-vehicle distance (VTAB structured), read with torchvision's ``Kitti``
(``download=False``) from the object-detection layout.

Layout (``data_object_image_2.zip`` and ``data_object_label_2.zip``, as torchvision expects)::

    DIR/Kitti/raw/training/image_2/000000.png ...
    DIR/Kitti/raw/training/label_2/000000.txt ...

Label (task_adaptation ``kitti.py``, task ``closest_vehicle_distance``): the smallest depth ``z``
(the 14th field, metres from the camera) of the Car / Van / Truck objects, 1000 when there are
none, binned by thresholds [-100, 8, 20, 999]: label = the last threshold below it (4 classes:
< 8 m, 8-20 m, > 20 m, no vehicle).

Splits: VTAB uses TFDS ``kitti`` train / validation / test, all cut from the 7,481 labelled
training images by drive, so that frames of one video never straddle two splits. When the
object devkit's mapping files are present (``devkit_object.zip`` extracted into
``DIR/Kitti/raw``: ``DIR/Kitti/raw/mapping/{train_rand.txt, train_mapping.txt}``) the split is
TFDS's exactly: image i belongs to drive ``train_mapping[train_rand[i] - 1]``, and
``numpy.random.seed(123)`` then ``choice`` picks 10% of the sorted drives for test and 10% of
the rest for validation (6,347 / 423 / 711 images). Without them: 80% / 10% / 10% of one fixed
permutation (seed 0) of the sorted file list (frames of a drive may then straddle splits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    SubsetSplit,
    reading,
    register_dataset,
    split_by_percent,
    torchvision_dataset,
)

URL = "https://www.cvlibs.net/datasets/kitti/eval_object.php (left colour images + training labels)"
VEHICLES = ("Car", "Van", "Truck")
DISTANCE_THRESHOLDS = np.array([-100.0, 8.0, 20.0, 999.0])


def closest_vehicle_label(label_file: str | Path) -> int:
    """Bin of the closest vehicle's depth, from one KITTI ``label_2`` file."""
    depths = [1000.0]  # no vehicle -> the last class
    with reading(label_file, URL), open(label_file) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 15:
                raise DataError(
                    f"{label_file}: a line has {len(fields)} fields, expected 15; replace the file"
                )
            if fields[0] in VEHICLES:
                depths.append(float(fields[13]))
    return int(np.searchsorted(DISTANCE_THRESHOLDS, min(depths), side="left")) - 1


def drive_splits(mapping: Path, n_images: int) -> list[np.ndarray] | None:
    """TFDS's by-drive (train, validation, test) image indices, or None without the mapping files."""
    rand, lines = mapping / "train_rand.txt", mapping / "train_mapping.txt"
    if not (rand.is_file() and lines.is_file()):
        return None
    with reading(rand, URL):
        line_ids = [int(x) - 1 for x in rand.read_text().split(",") if x.strip()]  # 1-based lines
    with reading(lines, URL):
        drives_of_line = [line.split(" ")[1] for line in lines.read_text().splitlines()]
    if len(line_ids) != n_images:
        raise DataError(
            f"{rand} maps {len(line_ids)} images but {n_images} were found; check the KITTI files"
        )
    drive_images: dict[str, list[int]] = {}
    for image_id, line_id in enumerate(line_ids):
        drive_images.setdefault(drives_of_line[line_id], []).append(image_id)
    rng = np.random.RandomState(123)  # the legacy stream TFDS seeds with np.random.seed(123)
    drives = sorted(drive_images)
    n_test = max(1, 10 * len(drives) // 100)
    n_val = max(1, 10 * len(drives) // 100)
    test = set(rng.choice(drives, n_test, replace=False))
    val = set(rng.choice(sorted(set(drives) - test), n_val, replace=False))
    parts: list[list[int]] = [[], [], []]
    for drive, images in drive_images.items():
        parts[2 if drive in test else 1 if drive in val else 0].extend(images)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _build(root: Path):
    from torchvision.datasets import Kitti

    where = root / "Kitti" / "raw" / "training"
    ds = torchvision_dataset(Kitti, where, URL, root=str(root), train=True)
    order = np.argsort(ds.images)  # os.listdir order differs between machines
    paths = [ds.images[i] for i in order]
    labels = [closest_vehicle_label(ds.targets[i]) for i in order]
    everything = FileSplit(paths, labels)
    by_drive = drive_splits(root / "Kitti" / "raw" / "mapping", len(paths))
    if by_drive is not None:
        train, val, test = (SubsetSplit(everything, idx) for idx in by_drive)
    else:
        train, val, test = split_by_percent(everything, 80, 10)
    return {"train": train, "val": val, "test": test}


register_dataset(
    RealDataset(
        name="kitti_distance",
        square=False,
        group="structured",
        classes=("<8m", "8-20m", ">20m", "no vehicle"),
        layout=("Kitti/raw/training/image_2", "Kitti/raw/training/label_2"),
        url=URL,
        build=_build,
        description="KITTI: distance to the closest vehicle, 4 bins (VTAB structured)",
        splits_note="TFDS's by-drive split with the devkit mapping, else 80/10/10 fixed permutation",
        vtab=True,
    )
)
