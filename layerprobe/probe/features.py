"""A unit's features, read through the cache's one reader (:mod:`layerprobe.extract.cache`):
which layers, in groups that fit the memory budget, each split file opened once per group."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerprobe.errors import CacheError, DataError, UnknownNameError, did_you_mean
from layerprobe.extract.cache import open_cache
from layerprobe.layers import match_item
from layerprobe.probe.problems import check_finite
from layerprobe.probe.units import Unit

MAX_LOAD_BYTES = 2 << 30  # features of the layers loaded at once (all splits)


def select_layers(unit: Unit, wanted: Sequence[str] | None) -> list[str]:
    """The layers to probe, in depth order; each must be in every split."""
    infos = list(unit.splits.values())
    common = [name for name in infos[0].layers if all(name in i.layers for i in infos[1:])]
    if not wanted:
        if not common:
            raise CacheError(f"the splits of {unit.name} share no layer; re-extract them together")
        return common
    chosen = set()
    for pattern in wanted:
        hits = match_item(pattern, common)
        if not hits:
            raise UnknownNameError(
                f"{unit.name} has no layer {pattern!r} in all its splits.{did_you_mean(pattern, common)}"
                f" Layers: {', '.join(common)}."
            )
        chosen.update(hits)
    return [name for name in common if name in chosen]


def layer_chunks(
    unit: Unit, layers: list[str], widths: list[int], *, budget: int = MAX_LOAD_BYTES
) -> list[list[str]]:
    """Groups of layers whose features (all splits, float32) fit the load budget (bytes)."""
    rows = sum(info.num_rows for info in unit.splits.values())
    chunks: list[list[str]] = [[]]
    used = 0
    for name, width in zip(layers, widths, strict=True):
        size = rows * width * 4
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(name)
        used += size
    return chunks


def labels_and_widths(unit: Unit, layers: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Each split's labels (N,) int64, and the train width D of each layer (one open per file)."""
    labels, widths = {}, []
    for split, info in unit.splits.items():
        with open_cache(info.path) as cache:
            labels[split] = cache.labels()
            if split == "train":
                widths = [cache.width(name) for name in layers]
    return labels, widths


def load_features(
    unit: Unit, layers: list[str], val_rows: np.ndarray | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer: train features (N, D) and evaluation features (V + T, D) — validation rows
    (``val_rows`` of train, or the val split where ``val_rows`` is None), then test rows — in
    the dtype they are stored in (the solver converts them where it needs to)."""
    feats = {}
    for split, info in unit.splits.items():
        with open_cache(info.path) as cache:
            feats[split] = cache.features(layers)
        for name, arr in feats[split].items():
            check_finite(arr, name, str(info.path))
    train, evals = [], []
    for name in layers:
        tr, te = feats["train"][name], feats["test"][name]
        val = tr[val_rows] if val_rows is not None else feats["val"][name]
        for split, arr in (("test", te), ("val", val)):
            if arr.shape[1] != tr.shape[1]:
                raise DataError(
                    f"{unit.name}: layer {name} is {tr.shape[1]} wide in train but {arr.shape[1]} in "
                    f"{split}; the splits come from different models — re-extract them together"
                )
        train.append(tr)
        evals.append(np.concatenate([val, te]))
    return train, evals
