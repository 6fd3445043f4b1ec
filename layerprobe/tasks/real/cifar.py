"""CIFAR-10 and CIFAR-100, read with torchvision's ``CIFAR10`` / ``CIFAR100`` (``download=False``).

Layout (the python archives, extracted into the data root)::

    DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    DIR/cifar-100-python/{train, test, meta}

Splits as VTAB: ``train`` = 90% of the official train split (45,000), ``val`` = the other 10%
(5,000), ``test`` = the official test split (10,000). torchvision's md5 checks are replaced by an
existence check (hashing 170 MB on every listing is slow; a damaged pickle still fails to load,
with the file named).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from layerprobe.errors import DataError
from layerprobe.tasks.base import ArraySplit
from layerprobe.tasks.real._common import (
    PARSE_ERRORS,
    RealDataset,
    register_dataset,
    split_by_percent,
)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
    camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
    dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
    leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
    otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road
    rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower
    sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
    willow_tree wolf woman worm""".split()
)
URL10 = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
URL100 = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


def _existing(cls):
    """A torchvision CIFAR class whose integrity check is file existence."""

    class Existing(cls):
        def _check_integrity(self) -> bool:
            files = [f for f, _ in self.train_list + self.test_list]
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f in files)

        def _load_meta(self) -> None:
            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            with open(path, "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    Existing.__name__ = cls.__name__
    return Existing


def _first_unreadable(folder: Path) -> Path:
    """The first pickle in ``folder`` that does not load (to name it in an error), else the folder."""
    for path in sorted(folder.iterdir()):
        try:
            with open(path, "rb") as f:
                pickle.load(f, encoding="latin1")
        except Exception:  # any failure means this is the file to name
            return path
    return folder


def _build(tv_name: str, folder: str, url: str):
    def build(root: Path):
        import torchvision.datasets as tvd

        cls = _existing(getattr(tvd, tv_name))
        out = {}
        for name, train in (("trainval", True), ("test", False)):
            try:
                ds = cls(str(root), train=train, download=False)
            except PARSE_ERRORS as err:
                # torchvision's error does not say which file
                bad = _first_unreadable(root / folder)
                raise DataError(
                    f"cannot read {bad}: {type(err).__name__}: {err}; download it again from {url}"
                ) from err
            out[name] = ArraySplit(ds.data, ds.targets)  # data: (N, 32, 32, 3) uint8
        train, val = split_by_percent(out["trainval"], 90)
        return {"train": train, "val": val, "test": out["test"]}

    return build


register_dataset(
    RealDataset(
        name="cifar10",
        group="natural",
        classes=CIFAR10_CLASSES,
        layout=tuple(
            f"cifar-10-batches-py/{f}"
            for f in [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch", "batches.meta"]
        ),
        url=URL10,
        build=_build("CIFAR10", "cifar-10-batches-py", URL10),
        description="CIFAR-10, 32 px objects",
        splits_note="train 90% / val 10% of official train, test = official test",
    )
)
register_dataset(
    RealDataset(
        name="cifar100",
        group="natural",
        classes=CIFAR100_CLASSES,
        layout=tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")),
        url=URL100,
        build=_build("CIFAR100", "cifar-100-python", URL100),
        description="CIFAR-100, 32 px objects (VTAB natural)",
        splits_note="train 90% / val 10% of official train, test = official test",
        vtab=True,
    )
)
