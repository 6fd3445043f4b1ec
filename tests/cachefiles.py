"""Test helper: write feature cache files by the contract of ``layerprobe/extract/cache.py``
with plain h5py, so probe tests do not depend on running a model."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import h5py
import numpy as np

from layerprobe.extract.cache import FORMAT_VERSION, cache_path


def write_cache_file(
    path: str | Path,
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    *,
    model: str = "timm:toy",
    model_key: str = "toy-0123456789ab",
    task: str = "toy",
    split: str = "train",
    pretrain: dict | None = None,
    complete: bool = True,
    format_version: int = FORMAT_VERSION,
    dtype: str = "float16",
    index: np.ndarray | None = None,
) -> Path:
    """Write one ``<split>.h5`` file holding ``features`` ({layer: (N, D)}) and ``labels`` (N,);
    ``index`` (N,) says which dataset item each row is (default 0 … N − 1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = list(features)
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", data=np.asarray(labels, np.int64))
        rows = np.arange(len(labels)) if index is None else index
        f.create_dataset("index", data=np.asarray(rows, dtype=np.int64))
        group = f.create_group("features")
        for name, arr in features.items():
            group.create_dataset(
                name, data=np.asarray(arr, dtype=dtype), chunks=(min(64, len(arr)), arr.shape[1])
            )
        attrs = {
            "format_version": format_version,
            "model": model,
            "model_key": model_key,
            "weights_sha256": "ab" * 32,
            "task": task,
            "split": split,
            "layers": layers,
            "depths": [i / max(len(layers) - 1, 1) for i in range(len(layers))],
            "pooling": "auto",
            "preprocess": json.dumps({"input_size": 32}),
            "pretrain": json.dumps(pretrain or {}),
            "dtype": dtype,
            "rows_done": len(labels),
            "complete": complete,
            "layerprobe_version": "test",
        }
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


def class_features(
    labels: np.ndarray, widths: dict[str, int], seed: int, signal: dict[str, float] | None = None
):
    """Random features with class structure: class means along the first axes, then noise.

    ``signal[layer]`` scales the class means (how separable the layer is).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for i, (name, width) in enumerate(widths.items()):
        strength = (signal or {}).get(name, 1.0 + i)
        centers = np.random.default_rng(1000 + i).normal(size=(int(labels.max()) + 1, width))
        out[name] = centers[labels] * strength + rng.normal(size=(len(labels), width))
    return out


def write_task(
    cache_dir: str | Path,
    *,
    model_key: str = "toy-0123456789ab",
    task: str = "toy",
    num_classes: int = 3,
    rows: dict[str, int] | None = None,
    widths: dict[str, int] | None = None,
    pretrain: dict | None = None,
    model: str = "timm:toy",
    signal: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Write complete caches of every split in ``rows`` ({split: rows per class}) for one task."""
    rows = rows or {"train": 30, "test": 10}
    widths = widths or {"blocks.0": 8, "blocks.1": 8, "pre_logits": 6}
    paths = {}
    for split, per_class in rows.items():
        labels = np.repeat(np.arange(num_classes), per_class)
        feats = class_features(
            labels, widths, seed=zlib.crc32(f"{model_key}/{task}/{split}".encode()), signal=signal
        )
        paths[split] = write_cache_file(
            cache_path(cache_dir, model_key, task, split=split),
            feats,
            labels,
            model=model,
            model_key=model_key,
            task=task,
            split=split,
            pretrain=pretrain,
        )
    return paths
