"""CLEVR counting and distance tasks (VTAB structured), read from the CLEVR v1.0 layout that
torchvision's ``CLEVRClassification`` uses: the counting task through that class
(``download=False``), the distance task from the scene files directly (the class exposes only
object counts).

Layout (the extracted ``CLEVR_v1.0.zip`` in ``DIR/clevr``)::

    DIR/clevr/CLEVR_v1.0/images/{train,val}/CLEVR_train_000000.png ...
    DIR/clevr/CLEVR_v1.0/scenes/CLEVR_{train,val}_scenes.json

Labels (task_adaptation ``clevr.py``):

* ``clevr_count``: number of objects - 3 (scenes hold 3..10 objects: 8 classes).
* ``clevr_distance``: the depth of the closest object, ``min(objects[:].pixel_coords[2])``,
  binned by thresholds [0, 8, 8.5, 9, 9.5, 10, 100]: label = the last threshold below it
  (6 classes).

Splits as VTAB: ``train`` = 90% of the official train set (63,000), ``val`` = the other 10%
(7,000), ``test`` = the official val set (15,000); the official test set has no scenes.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    reading,
    register_dataset,
    split_by_percent,
    torchvision_dataset,
)

URL = "https://cs.stanford.edu/people/jcjohns/clevr/ (CLEVR_v1.0.zip)"
DISTANCE_THRESHOLDS = np.array([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])


def distance_label(scene: dict) -> int:
    """Index of the last threshold strictly below the closest object's depth."""
    depth = min(obj["pixel_coords"][2] for obj in scene["objects"])
    return int(np.searchsorted(DISTANCE_THRESHOLDS, depth, side="left")) - 1


@functools.lru_cache(maxsize=2)
def _scenes(path: str) -> list[tuple[str, list]]:
    """(image file name, objects) per scene; cached so both tasks parse a file once."""
    with reading(path, URL), open(path) as f:
        scenes = json.load(f)["scenes"]
    return [
        (s["image_filename"], [{"pixel_coords": o["pixel_coords"]} for o in s["objects"]])
        for s in scenes
    ]


def _count_split(root: Path, split: str) -> FileSplit:
    """Object counts - 3, through torchvision's CLEVRClassification."""
    from torchvision.datasets import CLEVRClassification

    base = root / "clevr" / "CLEVR_v1.0"
    with reading(base / "scenes" / f"CLEVR_{split}_scenes.json", URL):
        ds = torchvision_dataset(CLEVRClassification, base, URL, root=str(root), split=split)
    return FileSplit(ds._image_files, [n - 3 for n in ds._labels])


def _distance_split(root: Path, split: str) -> FileSplit:
    return _split(root, split, distance_label)


def _split(root: Path, split: str, label_fn) -> FileSplit:
    base = root / "clevr" / "CLEVR_v1.0"
    path = base / "scenes" / f"CLEVR_{split}_scenes.json"
    scenes = sorted(_scenes(str(path)))
    if not scenes:
        raise DataError(f"{path} holds no scenes; download CLEVR again from {URL}")
    with reading(path, URL):
        labels = [label_fn({"objects": objects}) for _, objects in scenes]
    return FileSplit([base / "images" / split / name for name, _ in scenes], labels)


def _count(root: Path) -> dict[str, int]:
    """Split sizes from the image folders (one image per scene), without parsing the scene files."""
    images = root / "clevr" / "CLEVR_v1.0" / "images"
    n_train = sum(1 for p in (images / "train").iterdir() if p.suffix == ".png")
    n_test = sum(1 for p in (images / "val").iterdir() if p.suffix == ".png")
    train = 90 * n_train // 100
    return {"train": train, "val": n_train - train, "test": n_test}


def _builder(read_split):
    def build(root: Path):
        train, val = split_by_percent(read_split(root, "train"), 90)
        return {"train": train, "val": val, "test": read_split(root, "val")}

    return build


LAYOUT = (
    "clevr/CLEVR_v1.0/scenes/CLEVR_train_scenes.json",
    "clevr/CLEVR_v1.0/scenes/CLEVR_val_scenes.json",
    "clevr/CLEVR_v1.0/images/train",
    "clevr/CLEVR_v1.0/images/val",
)
register_dataset(
    RealDataset(
        name="clevr_count",
        square=False,
        group="structured",
        classes=tuple(str(n) for n in range(3, 11)),
        layout=LAYOUT,
        url=URL,
        build=_builder(_count_split),
        count=_count,
        description="CLEVR: number of objects (3-10) (VTAB structured)",
        splits_note="train 90% / val 10% of official train, test = official val",
        vtab=True,
    )
)
register_dataset(
    RealDataset(
        name="clevr_distance",
        square=False,
        group="structured",
        classes=("<8", "8-8.5", "8.5-9", "9-9.5", "9.5-10", ">=10"),
        layout=LAYOUT,
        url=URL,
        build=_builder(_distance_split),
        count=_count,
        description="CLEVR: depth of the closest object, 6 bins (VTAB structured)",
        splits_note="train 90% / val 10% of official train, test = official val",
        vtab=True,
    )
)
