"""Diabetic Retinopathy (Kaggle 2015), read from the published archive layout, with VTAB's
``btgraham-300`` preprocessing applied when an image is loaded.

Layout (the Kaggle competition files, extracted into ``DIR/diabetic_retinopathy``)::

    DIR/diabetic_retinopathy/trainLabels.csv            "image,level"
    DIR/diabetic_retinopathy/retinopathy_solution.csv   "image,level,Usage" (test labels)
    DIR/diabetic_retinopathy/train/<image>.jpeg
    DIR/diabetic_retinopathy/test/<image>.jpeg

Splits as TFDS ``diabetic_retinopathy_detection`` (which VTAB uses): ``train`` = the Kaggle
train set (35,126), ``val`` = the test images marked ``Public`` (10,906), ``test`` = those marked
``Private`` (42,670). Labels are the 0-4 severity grades.

Preprocessing (TFDS config ``btgraham-300``, Ben Graham's competition-winning recipe): scale the
eye to a radius of 300 px, subtract the local average colour (4 * img - 4 * blur(σ = 10) + 128),
keep the inner 90% of the disc (grey outside) and crop to it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit, open_image
from layerprobe.tasks.real._common import RealDataset, reading, register_dataset

URL = "https://www.kaggle.com/c/diabetic-retinopathy-detection/data"
CLASSES = ("no DR", "mild", "moderate", "severe", "proliferative")
RADIUS = 300


def btgraham(img: Image.Image, radius: int = RADIUS, name: str = "image") -> Image.Image:
    """Ben Graham's preprocessing, as TFDS's ``btgraham-300`` config (numpy/scipy, no OpenCV)."""
    from scipy.ndimage import gaussian_filter

    a = np.asarray(img, dtype=np.float32)
    row = a[a.shape[0] // 2].sum(axis=1)  # the middle row crosses the eye: its bright span is 2r
    r = (row > row.mean() / 10.0).sum() / 2.0
    if r < 1.0:
        raise DataError(
            f"cannot find the eye in {name} (empty middle row); remove or replace the file"
        )
    s = radius / r
    size = (max(1, round(a.shape[1] * s)), max(1, round(a.shape[0] * s)))
    a = np.asarray(img.resize(size, Image.BILINEAR), dtype=np.float32)
    blur = gaussian_filter(a, sigma=(radius / 30, radius / 30, 0))
    a = np.clip(4 * a - 4 * blur + 128, 0, 255)  # subtract the local average colour
    h, w = a.shape[:2]
    keep = int(radius * 0.9)  # the rim of the disc is noisy: mask it grey and crop to the disc
    yy, xx = np.ogrid[:h, :w]
    inside = (yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= keep**2
    a = np.where(inside[..., None], a, 128.0)
    a = a[
        max(h // 2 - keep, 0) : min(h // 2 + keep, h), max(w // 2 - keep, 0) : min(w // 2 + keep, w)
    ]
    return Image.fromarray(a.astype(np.uint8))


class RetinaSplit(FileSplit):
    """Fundus photographs with ``btgraham-300`` applied on load."""

    def load_image(self, i: int) -> Image.Image:
        return btgraham(open_image(self.paths[i]), name=self.paths[i])


def _rows(path: Path) -> list[dict]:
    with reading(path, URL), open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"image", "level"} <= set(rows[0]):
        raise DataError(f"{path} has columns {', '.join(rows[0])}; expected image,level[,Usage]")
    return rows


def _split(folder: Path, rows: list[dict]) -> RetinaSplit:
    rows = sorted(rows, key=lambda r: r["image"])
    return RetinaSplit(
        [folder / f"{r['image']}.jpeg" for r in rows], [int(r["level"]) for r in rows]
    )


def _build(root: Path):
    base = root / "diabetic_retinopathy"
    train = _rows(base / "trainLabels.csv")
    test = _rows(base / "retinopathy_solution.csv")
    usage = {r.get("Usage") for r in test}
    if not usage <= {"Public", "Private"}:
        raise DataError(
            f"{base / 'retinopathy_solution.csv'}: Usage must be Public or Private, found {sorted(map(str, usage))}"
        )
    return {
        "train": _split(base / "train", train),
        "val": _split(base / "test", [r for r in test if r["Usage"] == "Public"]),
        "test": _split(base / "test", [r for r in test if r["Usage"] == "Private"]),
    }


register_dataset(
    RealDataset(
        name="retinopathy",
        square=False,
        group="specialized",
        classes=CLASSES,
        layout=tuple(
            f"diabetic_retinopathy/{f}"
            for f in ("trainLabels.csv", "retinopathy_solution.csv", "train", "test")
        ),
        url=URL,
        build=_build,
        description="Diabetic Retinopathy grades, btgraham-300 preprocessing (VTAB specialized)",
        splits_note="Kaggle train; test Public = val, Private = test",
        vtab=True,
    )
)
