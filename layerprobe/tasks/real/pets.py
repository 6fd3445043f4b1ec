"""Oxford-IIIT Pets, read with torchvision's ``OxfordIIITPet`` (``download=False``).

Layout (the extracted ``images.tar.gz`` and ``annotations.tar.gz``, as torchvision expects)::

    DIR/oxford-iiit-pet/images/<Breed>_<n>.jpg
    DIR/oxford-iiit-pet/annotations/{trainval,test}.txt

Splits as VTAB: ``train`` = 80% of the official trainval list (2,944), ``val`` = the other 20%
(736), ``test`` = the official test list (3,669). Labels are the annotation files' class ids - 1.
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    reading,
    register_dataset,
    split_by_percent,
    torchvision_dataset,
)

CLASSES = tuple(
    """Abyssinian american_bulldog american_pit_bull_terrier basset_hound beagle Bengal Birman Bombay
    boxer British_Shorthair chihuahua Egyptian_Mau english_cocker_spaniel english_setter
    german_shorthaired great_pyrenees havanese japanese_chin keeshond leonberger Maine_Coon
    miniature_pinscher newfoundland Persian pomeranian pug Ragdoll Russian_Blue saint_bernard samoyed
    scottish_terrier shiba_inu Siamese Sphynx staffordshire_bull_terrier wheaten_terrier
    yorkshire_terrier""".split()
)
URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/ (images.tar.gz, annotations.tar.gz)"


def _build(root: Path):
    from torchvision.datasets import OxfordIIITPet

    out = {}
    for split in ("trainval", "test"):
        lst = root / "oxford-iiit-pet" / "annotations" / f"{split}.txt"
        with reading(lst, URL):
            ds = torchvision_dataset(OxfordIIITPet, lst, URL, root=str(root), split=split)
        out[split] = FileSplit(ds._images, ds._labels)
    train, val = split_by_percent(out["trainval"], 80)
    return {"train": train, "val": val, "test": out["test"]}


register_dataset(
    RealDataset(
        name="pets",
        square=False,
        group="natural",
        classes=CLASSES,
        layout=(
            "oxford-iiit-pet/images",
            "oxford-iiit-pet/annotations/trainval.txt",
            "oxford-iiit-pet/annotations/test.txt",
        ),
        url=URL,
        build=_build,
        description="Oxford-IIIT Pets, 37 breeds (VTAB natural)",
        splits_note="train 80% / val 20% of official trainval, test = official test",
        vtab=True,
    )
)
