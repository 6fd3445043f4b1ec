"""EuroSAT (RGB), read with torchvision's ``EuroSAT`` (an ImageFolder, ``download=False``).

Layout (the extracted ``EuroSAT.zip`` in ``DIR/eurosat``, as torchvision expects)::

    DIR/eurosat/2750/<class>/<class>_<n>.jpg

Splits as VTAB (TFDS has one 27,000-image split): ``train`` / ``val`` / ``test`` = 60% / 20% /
20% of one fixed permutation (seed 0) of the sorted file list (16,200 / 5,400 / 5,400).
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    class_index,
    reading,
    register_dataset,
    split_by_percent,
    torchvision_dataset,
)

CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
URL = "https://github.com/phelber/EuroSAT (EuroSAT.zip, RGB)"


def _build(root: Path):
    from torchvision.datasets import EuroSAT

    top = root / "eurosat" / "2750"
    with reading(top, URL):
        ds = torchvision_dataset(EuroSAT, top, URL, root=str(root))
    labels = [
        class_index(CLASSES, ds.classes[t], str(top)) for t in ds.targets
    ]  # ImageFolder: sorted
    train, val, test = split_by_percent(FileSplit([p for p, _ in ds.samples], labels), 60, 20)
    return {"train": train, "val": val, "test": test}


register_dataset(
    RealDataset(
        name="eurosat",
        group="specialized",
        classes=CLASSES,
        layout=("eurosat/2750",),
        url=URL,
        build=_build,
        description="EuroSAT Sentinel-2 land use, RGB (VTAB specialized)",
        splits_note="60/20/20 of all images, fixed permutation",
        vtab=True,
    )
)
