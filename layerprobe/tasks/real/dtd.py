"""Describable Textures (DTD), read with torchvision's ``DTD`` (``download=False``), partition 1.

Layout (the extracted ``dtd-r1.0.1.tar.gz`` inside ``DIR/dtd``, as torchvision expects)::

    DIR/dtd/dtd/images/<class>/<name>.jpg
    DIR/dtd/dtd/labels/{train1,val1,test1}.txt

Splits: the official ``train1`` / ``val1`` / ``test1`` lists (1,880 each), as TFDS and VTAB.
Labels index the 47 class names below (torchvision numbers only the classes present in a list).
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    class_index,
    reading,
    register_dataset,
    torchvision_dataset,
)

CLASSES = tuple(
    """banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched crystalline dotted
    fibrous flecked freckled frilly gauzy grid grooved honeycombed interlaced knitted lacelike lined
    marbled matted meshed paisley perforated pitted pleated polka-dotted porous potholed scaly smeared
    spiralled sprinkled stained stratified striped studded swirly veined waffled woven wrinkled
    zigzagged""".split()
)
URL = "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"


def _build(root: Path):
    from torchvision.datasets import DTD

    out = {}
    for split in ("train", "val", "test"):
        lst = root / "dtd" / "dtd" / "labels" / f"{split}1.txt"
        with reading(lst, URL):
            ds = torchvision_dataset(DTD, lst, URL, root=str(root), split=split, partition=1)
        labels = [class_index(CLASSES, Path(p).parent.name, str(lst)) for p in ds._image_files]
        out[split] = FileSplit(ds._image_files, labels)
    return out


register_dataset(
    RealDataset(
        name="dtd",
        square=False,
        group="natural",
        classes=CLASSES,
        layout=tuple(f"dtd/dtd/labels/{s}1.txt" for s in ("train", "val", "test"))
        + ("dtd/dtd/images",),
        url=URL,
        build=_build,
        description="Describable Textures, 47 classes (VTAB natural)",
        splits_note="official train1/val1/test1",
        vtab=True,
    )
)
