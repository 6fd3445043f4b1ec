"""Layer similarity: linear CKA between layers, from the HDF5 feature cache.

Linear CKA (Kornblith et al. 2019) of two layers with features X (n, d_a) and Y (n, d_b) on the
same n images is HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)) with the Gram matrices K = XXᵀ and
L = YYᵀ. HSIC is the **debiased** estimator (Song et al. 2012; used for CKA by Nguyen, Raghu &
Kornblith 2021): with the diagonals of K and L set to zero (K̃, L̃),

    HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n−1)(n−2)) − 2 · 1ᵀK̃L̃1 / (n−2)] / (n(n−3)).

The plain (biased) estimator is inflated for few images and wide layers; this one is not, so
independent layers come out near 0 rather than near some positive floor that depends on n and d.

How it is computed (:func:`cka_maps`): only tr(K̃L̃) needs the n × n Gram matrices; 1ᵀK̃1 and
K̃1 are O(n·d) per layer, in float64. The Gram matrices are built in square tiles (128 × 128,
small enough to stay in cache), only the tiles on and above the diagonal (K is symmetric), the
tile of every layer of one width from one batched product (``torch.bmm``); for every tile the
inner products of *all* wanted pairs of layers are one matrix product of the stacked,
diagonal-zeroed tiles, accumulated over tiles in float64. So each Gram matrix is built once,
memory stays within ``block_bytes`` whatever the number of layers, and no per-pair Python loop
touches n² numbers. The tiles are float32 for float16 features (the cache's default: their own
rounding is far coarser than float32 arithmetic; 12 checkpoints × 14 layers × 2,000 images agree
with float64 to 3e-8) and float64 otherwise (``precision`` overrides).

:func:`layer_similarity` reads a cache folder through :mod:`layerprobe.extract.cache`: per
(task, split), the map between every pair of layers of each checkpoint, and between the same
layers of different checkpoints (``model_key_b``) on the same images, on at most ``rows`` rows
(a subsample that depends only on the images' ``index`` and the seed, so every checkpoint uses
the same images).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from layerprobe.analysis.config import ROWS, SimilarityConfig
from layerprobe.analysis.config import SIMILARITY_FORMATS as FORMATS
from layerprobe.errors import ConfigError, DataError, UnknownNameError, did_you_mean
from layerprobe.extract.cache import CacheInfo, find_caches, read_arrays
from layerprobe.runtime.devices import resolve_device

BLOCK_BYTES = 256 * 2**20  # at most this memory for one tile of every layer's Gram matrix
TILE = 128  # rows and columns of a tile: 168 layers' tiles take 22 MB
COLUMNS = [
    "task",
    "split",
    "model_key",
    "model_key_b",
    "layer_a",
    "layer_b",
    "depth_a",
    "depth_b",
    "cka",
    "n_rows",
]
FILE = "similarity.parquet"


# -- the estimator ---------------------------------------------------------------------------


def cka_maps(
    features: Sequence,
    groups: Sequence[Sequence[int]],
    *,
    device: str = "cpu",
    block_bytes: int = BLOCK_BYTES,
    quiet: bool = True,
    precision: str = "auto",
) -> list[np.ndarray]:
    """Debiased linear CKA between the layers of each group, all groups in one pass.

    Parameters
    ----------
    features : sequence of K arrays (n, d_k), the same n rows (images) in the same order; numpy
        or torch, any float dtype (float16 and float32 are converted exactly).
    groups : sequence of index lists into ``features``; for each, the full map between its
        members is returned (e.g. the layers of one checkpoint, or one layer of several).
    device : torch device (``cpu``, ``cuda``, ``auto``).
    block_bytes : memory for one block of Gram rows of all K features (bytes).
    quiet : no progress bar.
    precision : dtype of the Gram tiles and their products: ``float64``, ``float32``, or
        ``auto`` (default): float32 when every feature array is float16 (as caches store them
        by default: their own rounding, 5e-4 relative, is thousands of times the float32
        arithmetic's), else float64. Means, centring, row sums and the accumulation over tiles
        are float64 either way.

    Returns
    -------
    One (len(group), len(group)) float64 array per group: CKA in [-1, 1] up to estimation
    noise, 1 on the diagonal, NaN where a layer is constant on these rows.
    """
    import torch
    from tqdm.auto import tqdm

    if not features:
        return [np.zeros((0, 0)) for _ in groups]
    dev = resolve_device(device)
    wd = _work_dtype(features, precision)
    feats = [_as_tensor(f, dev) for f in features]
    n = int(feats[0].shape[0])
    if any(f.ndim != 2 or f.shape[0] != n for f in feats):
        raise ValueError("every feature array must be 2-D with the same number of rows")
    if n < 4:
        raise DataError(f"CKA needs at least 4 images, got {n}; use a split with more rows")
    groups = [[int(i) for i in g] for g in groups]
    k = len(feats)
    # Layers of one width are stacked (k_w, n, d) so that one batched product per tile builds
    # the tile of every one of their Gram matrices; ``pos`` is each layer's place in the tile
    # buffer (the width groups one after the other, in order of first appearance).
    widths: dict[int, list[int]] = {}
    for j, f in enumerate(feats):
        widths.setdefault(int(f.shape[1]), []).append(j)
    order = [j for members in widths.values() for j in members]
    pos = [0] * k
    for p, j in enumerate(order):
        pos[j] = p
    # Centred float64 copies are kept when they fit in 4 blocks' memory, else made per tile.
    keep = sum(f.shape[0] * f.shape[1] for f in feats) * 8 <= 4 * block_bytes
    stacks = {
        d: torch.empty(len(m), n, d, dtype=wd, device=dev) if keep else None
        for d, m in widths.items()
    }
    means, sums, totals = [], [], []
    for j, f in enumerate(feats):  # per layer, O(n·d): the mean, K̃1 and 1ᵀK̃1
        xc = f.double()
        mu = xc.mean(0)
        xc -= mu
        diag = (xc * xc).sum(1)
        row = xc @ xc.sum(0) - diag  # K̃1: row sums without the diagonal
        d = int(f.shape[1])
        if keep:
            stacks[d][widths[d].index(j)] = xc
        means.append(mu)
        sums.append(row)
        totals.append(row.sum())
    rows = torch.stack(sums)  # (K, n)
    total = torch.stack(totals)  # (K,)
    trace = [torch.zeros(len(g), len(g), dtype=torch.float64, device=dev) for g in groups]
    where = [_slice_or_index([pos[j] for j in g], dev) for g in groups]
    # Square tiles of t × t entries of every Gram matrix, the tiles on and above the diagonal
    # (K is symmetric): small enough to stay in cache between their product and their use.
    t = int(min(n, TILE, max(16, math.isqrt(max(1, block_bytes // (8 * k))))))
    buffer = torch.empty(k * t * t, dtype=wd, device=dev)  # reused by every tile
    starts = range(0, n, t)
    for i0 in tqdm(starts, desc="CKA", unit="block", disable=quiet or None, leave=False):
        i1 = min(n, i0 + t)
        left = {d: _rows(stacks[d], feats, means, m, i0, i1, wd) for d, m in widths.items()}
        for j0 in range(i0, n, t):
            j1 = min(n, j0 + t)
            b, c = i1 - i0, j1 - j0
            block = buffer[: k * b * c].view(k, b, c)
            p = 0
            for d, m in widths.items():
                right = left[d] if j0 == i0 else _rows(stacks[d], feats, means, m, j0, j1, wd)
                torch.bmm(left[d], right.transpose(1, 2), out=block[p : p + len(m)])
                p += len(m)
            if j0 == i0:  # keep the strict upper triangle: (i, j) with j > i, each pair once
                lower = torch.ones(b, c, dtype=torch.bool, device=dev).tril_()
                block.masked_fill_(lower, 0.0)
            flat = block.view(k, b * c)
            for acc, sel in zip(trace, where, strict=True):
                part = flat[sel]
                if wd == torch.float64:
                    acc.addmm_(part, part.T)
                else:  # one tile's sums in float32, the sum over tiles in float64
                    acc += part @ part.T
    out = []
    for g, acc in zip(groups, trace, strict=True):
        t = 2.0 * acc  # tr(K̃L̃) = Σ_{i≠j} K_ij L_ij = 2 Σ_{i<j}
        r, s = rows[g], total[g]
        hsic = (t + torch.outer(s, s) / ((n - 1) * (n - 2)) - 2.0 * (r @ r.T) / (n - 2)) / (
            n * (n - 3)
        )
        out.append(_normalise(hsic.cpu().numpy()))
    return out


def linear_cka(x, y, *, device: str = "cpu") -> float:
    """Debiased linear CKA of two feature arrays x (n, d_a) and y (n, d_b) on the same rows."""
    return float(cka_maps([x, y], [[0, 1]], device=device)[0][0, 1])


def _normalise(hsic: np.ndarray) -> np.ndarray:
    diag = np.diag(hsic).copy()
    diag[~(diag > 0)] = np.nan  # a constant layer: CKA undefined
    cka = hsic / np.sqrt(np.outer(diag, diag))
    np.fill_diagonal(cka, np.where(np.isfinite(diag), 1.0, np.nan))
    return cka


def _rows(stack, feats, means, members, i0, i1, dtype):
    """Rows i0:i1 of the centred features of ``members`` (layers of one width) in ``dtype``,
    as (len(members), i1 - i0, d): a view of the kept stack, or made from the features."""
    import torch

    if stack is not None:
        return stack[:, i0:i1]
    return torch.stack([(feats[j][i0:i1].double() - means[j]).to(dtype) for j in members])


def _work_dtype(features, precision: str):
    """The dtype of the Gram tiles (see :func:`cka_maps`)."""
    import torch

    if precision not in ("auto", "float32", "float64"):
        raise ConfigError(f"unknown CKA precision {precision!r}; use auto, float32 or float64")
    if precision == "auto":
        half = all(str(getattr(f, "dtype", "")) in ("float16", "torch.float16") for f in features)
        return torch.float32 if half else torch.float64
    return torch.float32 if precision == "float32" else torch.float64


def _as_tensor(array, dev):
    import torch

    t = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array)
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # float16 (and ints) are exact in float32
    return t.to(dev)


def _slice_or_index(group: list[int], dev):
    """Rows ``group`` of the stacked blocks as a slice (a view, no copy) where they are evenly
    spaced (a checkpoint's layers; one layer of checkpoints with the same layers), else an
    index."""
    import torch

    step = group[1] - group[0] if len(group) > 1 else 1
    if step > 0 and group == list(range(group[0], group[0] + step * len(group), step)):
        return slice(group[0], group[-1] + 1, step)
    return torch.tensor(group, dtype=torch.long, device=dev)


# -- from the cache --------------------------------------------------------------------------


def select_caches(
    cache_dir: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    split: str = "test",
) -> list[CacheInfo]:
    """The complete caches of ``split`` for the given tasks and models (model keys or model
    names such as ``timm:vit_tiny``; default: all), checked for a CKA map.

    Raises :class:`UnknownNameError` for a task or model the cache does not hold,
    :class:`DataError` when the split is missing or a cache has fewer than two layers.
    """
    found = find_caches(cache_dir)
    if not found:
        raise DataError(f"no complete feature caches under {cache_dir}; run `layerprobe extract`")
    for name in models or []:
        if not any(name in (i.model_key, i.model) for i in found):
            known = sorted({i.model_key for i in found} | {i.model for i in found if i.model})
            raise UnknownNameError(
                f"no cache of model {name!r} under {cache_dir}."
                + did_you_mean(name, known)
                + f" It holds: {', '.join(sorted({i.model_key for i in found}))}"
            )
    for name in tasks or []:
        if not any(i.task == name for i in found):
            known = sorted({i.task for i in found})
            raise UnknownNameError(
                f"no cache of task {name!r} under {cache_dir}."
                + did_you_mean(name, known)
                + f" It holds: {', '.join(known)}"
            )
    chosen = [
        i
        for i in found
        if (not models or i.model_key in models or i.model in models)
        and (not tasks or i.task in tasks)
    ]
    picked = [i for i in chosen if i.split == split]
    if not picked:
        splits = sorted({i.split for i in chosen})
        raise DataError(
            f"no {split!r} split in the selected caches under {cache_dir}; they hold "
            f"{', '.join(splits)}: pass --split {splits[0]}"
        )
    for info in picked:
        if len(info.layers) < 2:
            raise DataError(
                f"{info.path} holds one layer ({', '.join(info.layers)}); a CKA map needs two or "
                "more: extract with --layers all (or several layers)"
            )
    return picked


def layer_similarity(
    config: SimilarityConfig | str | Path, *, precision: str = "auto", **options: Any
) -> pd.DataFrame:
    """Debiased linear CKA maps of the cached layers, as one long table.

    Takes what ``layerprobe similarity`` takes, under the same names and with the same defaults
    (one :class:`~layerprobe.analysis.config.SimilarityConfig`):
    ``layer_similarity("runs/demo/cache", task=["builtin/digits"], rows=2000)`` is
    ``layerprobe similarity --cache runs/demo/cache --task builtin/digits --rows 2000``.

    Parameters
    ----------
    config : a :class:`SimilarityConfig`, or the feature cache folder
        (``<cache>/<model_key>/<task>/<split>.h5``) with the other fields in ``options``.
    precision : of the Gram tiles, as in :func:`cka_maps` (``auto``: float32 for float16
        caches, float64 for float32 ones).
    **options : fields of :class:`SimilarityConfig` (set or replaced): ``task``, ``model``
        (only these tasks / model keys or model names; default all), ``split`` (which split's
        rows), ``rows`` (at most this many images per map; more are subsampled
        deterministically, by the images' ``index`` and ``seed``, so every checkpoint gets the
        same images), ``seed``, ``within`` (only the maps within each checkpoint; otherwise
        also CKA between the same layer of different checkpoints of a task, whose caches must
        hold the same images: :class:`DataError` otherwise), ``device`` (``cpu``, ``cuda``,
        ``auto``), ``quiet`` (no progress bar).

    Returns
    -------
    DataFrame with :data:`COLUMNS`: task, split, model_key, model_key_b (= model_key within a
    checkpoint), layer_a, layer_b, depth_a, depth_b, cka, n_rows (images used). Within a
    checkpoint every ordered pair of its L layers (L² rows, the map is symmetric); across
    checkpoints, each layer both hold, once per unordered pair of checkpoints.
    """
    if isinstance(config, SimilarityConfig):
        config = replace(config, **options)
    else:
        config = SimilarityConfig(cache=config, **options)
    if config.rows < 4:
        raise ConfigError(
            f"--rows {config.rows}: CKA needs at least 4 images; the default is {ROWS}"
        )
    infos = select_caches(config.cache, tasks=config.task, models=config.model, split=config.split)
    by_task: dict[str, list[CacheInfo]] = {}
    for info in infos:
        by_task.setdefault(info.task, []).append(info)
    frames = [
        _task_similarity(group, config, precision=precision) for _, group in sorted(by_task.items())
    ]
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def _task_similarity(
    infos: list[CacheInfo], config: SimilarityConfig, *, precision: str
) -> pd.DataFrame:
    """All maps of one (task, split): each checkpoint's, and across checkpoints."""
    infos = sorted(infos, key=lambda i: i.model_key)
    across = not config.within and len(infos) > 1
    positions = _chosen_rows(infos, config.rows, config.seed, same=across)
    feats, owners = [], []
    for info, pos in zip(infos, positions, strict=True):
        _, _, arrays = read_arrays(info.path, info.layers, rows=pos)
        for layer, depth in zip(info.layers, info.depths, strict=True):
            feats.append(arrays[layer])
            owners.append((info.model_key, layer, depth))
    groups, kinds = [], []
    start = 0
    for info in infos:
        groups.append(list(range(start, start + len(info.layers))))
        kinds.append("within")
        start += len(info.layers)
    if across:
        names = [layer for layer in infos[0].layers]
        names += sorted({o[1] for o in owners} - set(names))
        for name in names:
            members = [i for i, o in enumerate(owners) if o[1] == name]
            if len(members) > 1:
                groups.append(members)
                kinds.append("across")
    maps = cka_maps(feats, groups, device=config.device, quiet=config.quiet, precision=precision)
    n = len(positions[0])
    records = []
    for members, kind, cka in zip(groups, kinds, maps, strict=True):
        for a, ia in enumerate(members):
            for b, ib in enumerate(members):
                if kind == "across" and b <= a:
                    continue
                (key_a, layer_a, depth_a), (key_b, layer_b, depth_b) = owners[ia], owners[ib]
                records.append((key_a, key_b, layer_a, layer_b, depth_a, depth_b, float(cka[a, b])))
    table = pd.DataFrame.from_records(
        records,
        columns=["model_key", "model_key_b", "layer_a", "layer_b", "depth_a", "depth_b", "cka"],
    )
    table.insert(0, "split", infos[0].split)
    table.insert(0, "task", infos[0].task)
    table["n_rows"] = n
    return table


def _chosen_rows(infos: list[CacheInfo], rows: int, seed: int, *, same: bool) -> list[np.ndarray]:
    """Row positions to read from each cache: the same images (by ``index``) in the same
    order in every cache, at most ``rows`` of them."""
    indexes = [read_arrays(info.path, [])[1] for info in infos]
    for info, index in zip(infos, indexes, strict=True):
        if len(index) < 4:
            raise DataError(f"{info.path} has {len(index)} rows; CKA needs at least 4 images")
        if len(np.unique(index)) != len(index):
            raise DataError(
                f"{info.path} repeats images in its index; extract it again with --force"
            )
    if same:
        first, ref = infos[0], np.sort(indexes[0])
        for info, index in zip(infos[1:], indexes[1:], strict=True):
            if len(index) != len(ref) or not np.array_equal(np.sort(index), ref):
                common = len(np.intersect1d(ref, index))
                raise DataError(
                    f"{first.path} and {info.path} hold different images ({len(ref)} and "
                    f"{len(index)} rows, {common} in common); CKA across checkpoints needs the "
                    "same images: extract both from the same split, or pass --within"
                )
    out = []
    for index in indexes:
        ids = np.sort(index)
        if len(ids) > rows:
            pick = np.random.default_rng(seed).choice(len(ids), size=rows, replace=False)
            ids = ids[np.sort(pick)]
        order = np.argsort(index, kind="stable")
        out.append(order[np.searchsorted(index[order], ids)])
    return out


def write_similarity(table: pd.DataFrame, out_dir: str | Path) -> Path:
    """Write the table as ``out_dir/similarity.parquet``, atomically (a temporary name, then a
    rename)."""
    from layerprobe.analysis.fit import write_fits

    return write_fits(table, Path(out_dir) / FILE)


def read_similarity(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_similarity` (a file, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path}: {err}; run `layerprobe similarity` again") from err
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path} is not a similarity table (no {', '.join(missing)})")
    return table


# -- for people ------------------------------------------------------------------------------


def format_similarity(table: pd.DataFrame, fmt: str = "table") -> str:
    """``table``: a layer × layer matrix per checkpoint and task, then the cross-checkpoint rows;
    ``csv`` and ``json``: every row and column."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6g")
    if fmt == "json":
        return table.to_json(orient="records", indent=1, double_precision=6) + os.linesep
    parts = []
    within = table[table["model_key"] == table["model_key_b"]]
    for (task, split, key), part in within.groupby(
        ["task", "split", "model_key"], sort=True, observed=True
    ):
        order = part.drop_duplicates("layer_a").sort_values("depth_a")["layer_a"].tolist()
        matrix = part.pivot(index="layer_a", columns="layer_b", values="cka").loc[order, order]
        matrix.index.name = None
        matrix.columns.name = None
        n = int(part["n_rows"].iloc[0])
        parts.append(f"{key} · {task} ({split}, {n} images): linear CKA (debiased)")
        parts.append(matrix.to_string(float_format=lambda v: f"{v:.2f}"))
    across = table[table["model_key"] != table["model_key_b"]]
    if len(across):
        parts.append("across checkpoints (same layer):")
        shown = across[["task", "layer_a", "model_key", "model_key_b", "cka"]].rename(
            columns={"layer_a": "layer"}
        )
        parts.append(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return "\n\n".join(parts) + "\n"
