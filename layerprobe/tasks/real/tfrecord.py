"""Images and labels from TFRecord files of ``tf.train.Example`` records, without TensorFlow.

A TFRecord file is a sequence of records: uint64 length, uint32 CRC of the length, the data,
uint32 CRC of the data (little-endian; the CRCs are not checked here). Each record's data is a
serialized ``Example { Features features = 1 }``, ``Features { map<string, Feature> feature = 1 }``,
``Feature { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3 } }``,
each list holding ``repeated value = 1``.

Indexing a file reads only the small protobuf headers and seeks over the image bytes, so the
labels of a split come without reading its images.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from layerprobe.errors import DataError
from layerprobe.tasks.base import SplitData

LEN, VARINT, I64, I32 = 2, 0, 1, 5  # protobuf wire types


def _varint(f: BinaryIO) -> int:
    shift = value = 0
    while True:
        b = f.read(1)
        if not b:
            raise EOFError("truncated varint")
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7


def _skip(f: BinaryIO, wire: int) -> None:
    if wire == VARINT:
        _varint(f)
    elif wire == LEN:
        f.seek(_varint(f), os.SEEK_CUR)
    elif wire in (I64, I32):
        f.seek(8 if wire == I64 else 4, os.SEEK_CUR)
    else:
        raise ValueError(f"unsupported protobuf wire type {wire}")


def _features(f: BinaryIO, end: int) -> dict[str, tuple[int, int]]:
    """{feature key: (offset, length) of its ``Feature`` message} of the Example ending at ``end``."""
    out = {}
    while f.tell() < end:
        tag = _varint(f)
        if tag != (1 << 3 | LEN):  # Example.features
            _skip(f, tag & 7)
            continue
        features_end = f.tell() + _varint(f)
        while f.tell() < features_end:
            tag = _varint(f)
            if tag != (1 << 3 | LEN):  # Features.feature map entries
                _skip(f, tag & 7)
                continue
            entry_end = f.tell() + _varint(f)
            key, value = None, None
            while f.tell() < entry_end:
                tag = _varint(f)
                if tag == (1 << 3 | LEN):
                    key = f.read(_varint(f)).decode()
                elif tag == (2 << 3 | LEN):
                    n = _varint(f)
                    value = (f.tell(), n)
                    f.seek(n, os.SEEK_CUR)
                else:
                    _skip(f, tag & 7)
            if key is not None and value is not None:
                out[key] = value
    return out


def _first_bytes(f: BinaryIO, feature: tuple[int, int]) -> tuple[int, int]:
    """(offset, length) of the first value of a ``bytes_list`` Feature."""
    f.seek(feature[0])
    if _varint(f) != (1 << 3 | LEN):
        raise ValueError("feature is not a bytes_list")
    _varint(f)  # BytesList length
    if _varint(f) != (1 << 3 | LEN):
        raise ValueError("empty bytes_list")
    n = _varint(f)
    return f.tell(), n


def _first_int64(f: BinaryIO, feature: tuple[int, int]) -> int:
    """The first value of an ``int64_list`` Feature (packed or not)."""
    f.seek(feature[0])
    data = io.BytesIO(f.read(feature[1]))
    if _varint(data) != (3 << 3 | LEN):
        raise ValueError("feature is not an int64_list")
    _varint(data)
    tag = _varint(data)
    if tag == (1 << 3 | LEN):  # packed
        _varint(data)
    elif tag != (1 << 3 | VARINT):
        raise ValueError("empty int64_list")
    value = _varint(data)
    return value - (1 << 64) if value >= 1 << 63 else value  # two's complement int64


def index_records(path: Path, image_key: str = "image", label_key: str = "label") -> np.ndarray:
    """(N, 3) int64 rows ``(image offset, image length, label)``, one per record of ``path``."""
    rows = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        while f.tell() < size:
            header = f.read(12)
            if len(header) < 12:
                raise EOFError(f"truncated record header at byte {f.tell() - len(header)}")
            (length,) = struct.unpack("<Q", header[:8])
            start = f.tell()
            if start + length + 4 > size:
                raise EOFError(f"truncated record at byte {start}")
            features = _features(f, start + length)
            if image_key not in features or label_key not in features:
                raise ValueError(
                    f"record at byte {start} has features {sorted(features)}, not {image_key!r} and {label_key!r}"
                )
            offset, n = _first_bytes(f, features[image_key])
            rows.append((offset, n, _first_int64(f, features[label_key])))
            f.seek(start + length + 4)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


class TFRecordSplit(SplitData):
    """Encoded images stored in TFRecord files; ``index`` rows are (file, offset, length)."""

    def __init__(self, files: list[Path], index: np.ndarray, labels: np.ndarray):
        self.files = [Path(p) for p in files]
        self.index = np.asarray(index, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._handles: dict[int, BinaryIO] = {}
        self._pid = None

    def __getstate__(self):  # picklable for DataLoader workers: no open handles
        state = dict(self.__dict__)
        state["_handles"], state["_pid"] = {}, None
        return state

    def _handle(self, k: int) -> BinaryIO:
        if self._pid != os.getpid():  # file handles do not survive fork
            self._handles, self._pid = {}, os.getpid()
        if k not in self._handles:
            self._handles[k] = open(self.files[k], "rb")  # noqa: SIM115 - kept open for reads
        return self._handles[k]

    def load_image(self, i: int) -> Image.Image:
        k, offset, n = (int(v) for v in self.index[i])
        f = self._handle(k)
        f.seek(offset)
        data = f.read(n)
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:
            raise DataError(
                f"cannot decode image of {self.describe_item(i)}: {err}; replace the file"
            ) from err

    def describe_item(self, i: int) -> str:
        k, offset, _ = (int(v) for v in self.index[i])
        return f"{self.files[k]} (record image at byte {offset})"


def read_tfrecords(
    files: list[Path], image_key: str = "image", label_key: str = "label"
) -> TFRecordSplit:
    """Index every record of ``files`` (in the given order) into one split."""
    index, labels = [], []
    for k, path in enumerate(files):
        try:
            rows = index_records(path, image_key, label_key)
        except (OSError, ValueError, EOFError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read TFRecord file {path}: {err}; download it again") from err
        index.append(np.column_stack([np.full(len(rows), k), rows[:, :2]]))
        labels.append(rows[:, 2])
    if not index:
        return TFRecordSplit([], np.zeros((0, 3), np.int64), np.zeros(0, np.int64))
    return TFRecordSplit(files, np.concatenate(index), np.concatenate(labels))
