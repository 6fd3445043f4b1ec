"""SUN397 scenes, read with torchvision's ``SUN397`` (``download=False``).

Layout (the extracted ``SUN397.tar.gz``, as torchvision expects)::

    DIR/SUN397/ClassName.txt
    DIR/SUN397/a/abbey/sun_aaalbzqrimafwbiv.jpg ...

Splits: VTAB uses TFDS ``sun397/tfds``, a random 70% / 10% / 20% split of all images
(76,128 / 10,875 / 21,750) fixed by three file lists that ship inside the
``tensorflow_datasets`` package (``image_classification/sun397_tfds_{tr,va,te}.txt``). Copy
those three files into ``DIR/SUN397/`` to get TFDS's split exactly; without them the same
proportions are cut from one fixed permutation (seed 0) of the sorted file list. Class names are
in ``ClassName.txt``; here listed as indices 0..396.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import (
    RealDataset,
    SubsetSplit,
    index_names,
    reading,
    register_dataset,
    sorted_pairs,
    split_by_percent,
    torchvision_dataset,
)

URL = "https://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz"


def _build(root: Path):
    from torchvision.datasets import SUN397

    with reading(root / "SUN397" / "ClassName.txt", URL):
        ds = torchvision_dataset(SUN397, root / "SUN397", URL, root=str(root))
    # rglob order differs between machines: sort
    paths, labels = sorted_pairs(ds._image_files, ds._labels)
    everything = FileSplit(paths, labels)
    lists = [root / "SUN397" / f"sun397_tfds_{s}.txt" for s in ("tr", "va", "te")]
    if all(p.is_file() for p in lists):
        row = {Path(p).relative_to(root / "SUN397").as_posix(): i for i, p in enumerate(paths)}
        train, val, test = (SubsetSplit(everything, _rows(lst, row)) for lst in lists)
    else:
        train, val, test = split_by_percent(everything, 70, 10)
    return {"train": train, "val": val, "test": test}


def _rows(path: Path, row: dict[str, int]) -> np.ndarray:
    """Rows of the images a TFDS list names (one image path per line, relative to SUN397/)."""
    with reading(path, URL):
        names = [line.strip().lstrip("/") for line in path.read_text().splitlines() if line.strip()]
    unknown = [n for n in names if n not in row]
    if unknown:
        raise DataError(
            f"{path} names {len(unknown)} images not under SUN397/, e.g. {unknown[0]}; check the data"
        )
    return np.sort(np.asarray([row[n] for n in names], dtype=np.int64))


register_dataset(
    RealDataset(
        name="sun397",
        square=False,
        group="natural",
        classes=index_names(397),
        layout=("SUN397/ClassName.txt",),
        url=URL,
        build=_build,
        description="SUN397 scenes (VTAB natural)",
        splits_note="TFDS's 70/10/20 lists when present, else 70/10/20 fixed permutation",
        vtab=True,
    )
)
