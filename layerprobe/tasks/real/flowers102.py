"""Oxford Flowers-102, read with torchvision's ``Flowers102`` (``download=False``).

Layout (as torchvision expects)::

    DIR/flowers-102/jpg/image_00001.jpg ...
    DIR/flowers-102/imagelabels.mat
    DIR/flowers-102/setid.mat

Splits: the official ``trnid`` / ``valid`` / ``tstid`` sets (1,020 / 1,020 / 6,149), as VTAB.
torchvision's md5 check of the two .mat files is replaced by an existence check.
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import LazyNames, RealDataset, reading, register_dataset

URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (102flowers.tgz, imagelabels.mat, setid.mat)"


def _names():
    from torchvision.datasets import Flowers102

    return Flowers102.classes


def _build(root: Path):
    from torchvision.datasets import Flowers102

    class Existing(Flowers102):
        def _check_integrity(self) -> bool:
            base = self._base_folder
            return self._images_folder.is_dir() and all(
                (base / f).is_file() for f, _ in self._file_dict.values() if f.endswith(".mat")
            )

    out = {}
    for split in ("train", "val", "test"):
        with reading(root / "flowers-102" / "setid.mat", URL):
            ds = Existing(str(root), split=split, download=False)
        out[split] = FileSplit(ds._image_files, ds._labels)
    return out


register_dataset(
    RealDataset(
        name="flowers102",
        square=False,
        group="natural",
        classes=LazyNames(102, _names),
        layout=("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
        url=URL,
        build=_build,
        description="Oxford Flowers-102 (VTAB natural)",
        splits_note="official train/val/test sets",
        vtab=True,
    )
)
