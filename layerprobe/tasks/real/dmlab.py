"""DMLab frames (VTAB structured): 6 classes = {close, far, very far} x {positive, negative reward}.

Two layouts are read, the published archive first:

* the TFRecord shards of ``dmlab.tar.gz`` (what TFDS ``dmlab`` downloads), extracted into
  ``DIR/dmlab``: ``DIR/dmlab/dmlab-{train,validation,test}.tfrecord*``, each record a
  ``tf.train.Example`` with ``image`` (JPEG bytes), ``filename`` and ``label``; read without
  TensorFlow (``tfrecord.py``);
* or an ImageFolder export, one folder per TFDS split and label:
  ``DIR/dmlab/{train,validation,test}/<label 0-5>/<name>.png``.

Splits: the TFDS train / validation / test splits (65,550 / 22,628 / 22,735), as VTAB.
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit
from layerprobe.tasks.real._common import RealDataset, register_dataset, scan_class_folders
from layerprobe.tasks.real.tfrecord import read_tfrecords

URL = "https://storage.googleapis.com/akolesnikov-dmlab-tfds/dmlab.tar.gz"
CLASSES = ("0", "1", "2", "3", "4", "5")
SPLITS = {"train": "train", "val": "validation", "test": "test"}  # ours -> TFDS's


def _shards(base: Path, split: str) -> list[Path]:
    return sorted(base.glob(f"dmlab-{split}.tfrecord*"))


def _build(root: Path):
    base = root / "dmlab"
    if all(_shards(base, theirs) for theirs in SPLITS.values()):
        return {ours: read_tfrecords(_shards(base, theirs)) for ours, theirs in SPLITS.items()}
    if all((base / theirs).is_dir() for theirs in SPLITS.values()):
        out = {}
        for ours, theirs in SPLITS.items():
            paths, labels = scan_class_folders(base / theirs, CLASSES)
            out[ours] = FileSplit(paths, labels)
        return out
    raise DataError(
        f"{base} holds neither dmlab-{{train,validation,test}}.tfrecord* shards nor "
        f"train/, validation/, test/ class folders; extract {URL} into it"
    )


register_dataset(
    RealDataset(
        name="dmlab",
        square=False,
        group="structured",
        classes=CLASSES,
        layout=("dmlab",),
        url=URL,
        build=_build,
        description="DMLab 3-D frames: distance x reward of the object in view (VTAB structured)",
        splits_note="TFDS train/validation/test",
        vtab=True,
    )
)
