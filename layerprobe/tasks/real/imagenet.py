"""ImageNet-1k (ILSVRC-2012), read with torchvision's ``ImageNet`` (``download=False`` semantics).

Layout (what torchvision's ``ImageNet`` leaves after parsing the official archives once: run
``torchvision.datasets.ImageNet(DIR/imagenet, split=...)`` with ``ILSVRC2012_devkit_t12.tar.gz``
and ``ILSVRC2012_img_{train,val}.tar`` in ``DIR/imagenet``)::

    DIR/imagenet/meta.bin
    DIR/imagenet/train/n01440764/n01440764_10026.JPEG ...
    DIR/imagenet/val/n01440764/ILSVRC2012_val_00000293.JPEG ...

This loader never extracts archives (it would write ~150 GB into the data root): the folders
must exist. Splits as VTAB: ``train`` = 96% of the official train set, ``val`` = the other 4%,
``test`` = the official validation set (50,000). Labels follow the sorted WordNet ids.
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

URL = "https://image-net.org/challenges/LSVRC/2012/2012-downloads.php (devkit + train/val archives)"


def _build(root: Path):
    from torchvision.datasets import ImageNet

    out = {}
    for split in ("train", "val"):
        with reading(root / "imagenet" / "meta.bin", URL):
            ds = torchvision_dataset(
                ImageNet, root / "imagenet", URL, root=str(root / "imagenet"), split=split
            )
        out[split] = FileSplit([p for p, _ in ds.samples], ds.targets)
    train, val = split_by_percent(out["train"], 96)
    return {"train": train, "val": val, "test": out["val"]}


register_dataset(
    RealDataset(
        name="imagenet",
        group="natural",
        classes=index_names(1000),
        layout=("imagenet/meta.bin", "imagenet/train", "imagenet/val"),
        url=URL,
        build=_build,
        description="ImageNet-1k (ILSVRC-2012)",
        splits_note="train 96% / val 4% of official train, test = official val",
    )
)
