"""PatchCamelyon (PCam), the h5 files torchvision's ``PCAM`` reads (``download=False``).

Layout (the gunzipped files from the PCam release, in ``DIR/pcam`` as torchvision expects)::

    DIR/pcam/camelyonpatch_level_2_split_{train,valid,test}_x.h5   dataset "x" (N, 96, 96, 3) uint8
    DIR/pcam/camelyonpatch_level_2_split_{train,valid,test}_y.h5   dataset "y" (N, 1, 1, 1)

Splits: the official train / valid / test files (262,144 / 32,768 / 32,768), as VTAB. Labels are
read from the small ``_y`` files; images are read one at a time from the open ``_x`` file
(torchvision's class reopens both files for every item).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from layerprobe.tasks.base import SplitData
from layerprobe.tasks.real._common import (
    SPLITS,
    RealDataset,
    reading,
    register_dataset,
    torchvision_dataset,
)

URL = "https://github.com/basveeling/pcam (Zenodo record 2546921)"
FILES = {s: f"camelyonpatch_level_2_split_{s}" for s in ("train", "valid", "test")}


class H5ImageSplit(SplitData):
    """Images in an HDF5 dataset ``x`` (N, H, W, 3); the file is opened once per process."""

    def __init__(self, path: Path, labels: np.ndarray):
        self.path = path
        self.labels = np.asarray(labels, dtype=np.int64)
        self._file, self._pid = None, None

    def load_image(self, i: int) -> Image.Image:
        import h5py

        if self._file is None or self._pid != os.getpid():  # h5py handles do not survive fork
            with reading(self.path, URL):
                self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return Image.fromarray(np.asarray(self._file["x"][i], dtype=np.uint8)).convert("RGB")

    def describe_item(self, i: int) -> str:
        return f"{self.path}[x][{i}]"

    def __getstate__(self):  # picklable for DataLoader workers: drop the open handle
        state = dict(self.__dict__)
        state["_file"] = state["_pid"] = None
        return state


def _build(root: Path):
    import h5py
    from torchvision.datasets import PCAM

    out = {}
    for split in SPLITS:
        # existence check (torchvision's PCAM names its splits as we do)
        torchvision_dataset(PCAM, root / "pcam", URL, root=str(root), split=split)
        stem = PCAM._FILES[split]["images"][0].removesuffix("_x.h5")
        y_path = root / "pcam" / f"{stem}_y.h5"
        with reading(y_path, URL), h5py.File(y_path, "r") as f:
            labels = np.asarray(f["y"][()]).reshape(-1)
        out[split] = H5ImageSplit(root / "pcam" / f"{stem}_x.h5", labels)
    return out


register_dataset(
    RealDataset(
        name="pcam",
        group="specialized",
        classes=("normal", "tumor"),
        layout=tuple(f"pcam/{FILES[s]}_{xy}.h5" for s in ("train", "valid", "test") for xy in "xy"),
        url=URL,
        build=_build,
        description="PatchCamelyon lymph-node patches, 96 px (VTAB specialized)",
        splits_note="official train/valid/test",
        vtab=True,
    )
)
