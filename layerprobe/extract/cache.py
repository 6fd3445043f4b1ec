"""The HDF5 feature cache: paths, the format contract, and reading.

One file per (model key, task, split): ``<cache>/<model_key>/<task>/<split>.h5``. While it
is written it is called ``<split>.h5.partial``; it is renamed to ``<split>.h5`` only once
``complete`` is true, so a crash never leaves a file that looks finished.

Inside: ``labels`` (N,) int64, ``index`` (N,) int64, ``features/<layer>`` (N, D) float16 or
float32; attributes ``format_version``, ``model``, ``model_key``, ``weights_sha256``,
``task``, ``split``, ``layers`` (depth order), ``depths``, ``pooling``, ``preprocess``,
``dtype``, ``rows_done``, ``complete``, ``layerprobe_version``, ``extraction_id`` (a random id
given when the file is created: probes key their results on it, so re-extracted rows are
always probed again).

The writer (:mod:`layerprobe.extract.writer`) also stores ``pretrain`` (JSON),
``amp``, ``num_items``, ``item_start``, ``item_stop``, ``items_done`` and
``skipped_items`` (dataset indices of unreadable images left out with ``--skip-bad``;
their rows are removed, so ``index`` is the way from a row to its dataset item).

This module is the one reader of the format: every room that reads caches (probe, pretrain,
the analysis) goes through :func:`find_caches` (discovery), :func:`read_info` (validation),
:func:`open_cache` (labels, widths, features of an open file) or :func:`read_arrays`; no other
module opens HDF5 (``tests/test_architecture.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from layerprobe.errors import CacheError, UnknownNameError, did_you_mean

FORMAT_VERSION = 1
SUFFIX = ".h5"
PARTIAL_SUFFIX = ".h5.partial"
# Upstream accuracy measured by `layerprobe upstream`, beside a model key's caches.
UPSTREAM_FILE = "upstream.json"


def cache_path(cache_dir: str | Path, model_key: str, task: str, *, split: str) -> Path:
    """Where the finished cache file of (model key, task, split) lives."""
    return Path(cache_dir) / model_key / _task_dir(task) / f"{split}{SUFFIX}"


def partial_path(cache_dir: str | Path, model_key: str, task: str, *, split: str) -> Path:
    """Where the cache file is written until it is complete."""
    return Path(cache_dir) / model_key / _task_dir(task) / f"{split}{PARTIAL_SUFFIX}"


def _task_dir(task: str) -> str:
    """The task's folder name: registry names as they are (``builtin/digits`` nests);
    ``folder:/abs/path`` becomes one folder ``folder-path-<hash>`` inside the cache."""
    if ":" not in task:
        return task.replace("..", "_").strip("/")
    kind, _, where = task.partition(":")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(where).name or "root")
    digest = hashlib.sha1(task.encode()).hexdigest()[:8]
    return f"{kind}-{name}-{digest}"


def _decode(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class CacheInfo:
    """What a complete cache file holds, read from its attributes (no features loaded)."""

    path: Path
    model_key: str
    model: str
    task: str
    split: str
    layers: list[str]
    depths: list[float]
    num_rows: int
    attrs: dict = field(default_factory=dict)

    def identity(self) -> list:
        """What makes these rows these rows: the file's extraction id (new for every
        extraction; a file written before ids existed stands in with its modification time),
        the task's images, rows, layers, dtype and amp."""
        made = self.attrs.get("extraction_id") or f"mtime:{self.path.stat().st_mtime_ns}"
        return [
            made,
            self.attrs.get("task_fingerprint", ""),
            self.num_rows,
            self.layers,
            self.attrs.get("dtype", ""),
            self.attrs.get("amp", "none"),
        ]

    @property
    def pretrain(self) -> dict:
        """Pretraining knobs recorded by the backbone (params, head_wd, ...), or {}."""
        raw = self.attrs.get("pretrain", "{}")
        return json.loads(raw) if isinstance(raw, str) else {}


def read_info(path: str | Path) -> CacheInfo:
    """Read and check a cache file's attributes; raises :class:`CacheError` if unusable."""
    path = Path(path)
    if path.name.endswith(PARTIAL_SUFFIX):
        raise CacheError(
            f"{path} is an unfinished extraction; re-run the same `layerprobe extract` to finish it"
        )
    if path.is_dir():
        raise CacheError(f"{path} is a folder where a cache file should be; move it away")
    with open_cache(path) as cache:
        attrs = cache.attrs()
        num_rows = cache.num_rows()
        rows = _dataset_rows(cache.file, attrs.get("layers") or [])
    version = attrs.get("format_version")
    if version is None or "layers" not in attrs:
        raise CacheError(
            f"{path} is not a layerprobe feature cache (no format_version/layers attributes)"
        )
    if not str(version).isdigit():
        raise CacheError(
            f"{path} has a format_version of {version!r}, not a number; it was not written by "
            "layerprobe: delete it and extract again"
        )
    damaged = [name for name, n in rows.items() if n != num_rows]
    if attrs.get("complete", False) and damaged:
        what = rows[damaged[0]]
        raise CacheError(
            f"{path} is damaged: layer {damaged[0]} has "
            + ("no dataset" if what is None else f"{what} rows, labels {num_rows}")
            + "; extract it again with --force"
        )
    if int(version) != FORMAT_VERSION:
        raise CacheError(
            f"{path} has cache format_version {version}, this layerprobe reads {FORMAT_VERSION}; "
            "re-extract with --force"
        )
    if not attrs.get("complete", False):  # a .partial renamed by hand: resumable under its name
        raise CacheError(
            f"{path} is not complete (an unfinished extraction renamed from {path.name}.partial?); "
            f"rename it back to {path.name}.partial and re-run the same `layerprobe extract` to "
            "finish it"
        )
    layers = list(attrs["layers"])
    depths = [float(d) for d in attrs.get("depths", [])] or [
        i / max(len(layers) - 1, 1) for i in range(len(layers))
    ]
    return CacheInfo(
        path=path,
        model_key=str(attrs.get("model_key", path.parent.parent.name)),
        model=str(attrs.get("model", "")),
        task=str(attrs["task"]),
        split=str(attrs["split"]),
        layers=layers,
        depths=depths,
        num_rows=num_rows,
        attrs=attrs,
    )


def _dataset_rows(f: h5py.File, layers) -> dict[str, int | None]:
    """Rows of each layer's feature dataset (None where it is missing)."""
    group = f.get("features")
    names = [layers] if isinstance(layers, str | bytes) else list(layers)
    out = {}
    for name in names:
        name = name.decode() if isinstance(name, bytes) else str(name)
        dset = group.get(name) if group is not None else None
        out[name] = int(dset.shape[0]) if isinstance(dset, h5py.Dataset) else None
    return out


def read_arrays(
    path: str | Path, layers: list[str] | None = None, *, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Load ``labels`` (N,), ``index`` (N,) and ``{layer: (N, D) features}`` of a complete cache.

    Features come back in the dtype they were stored in (float16 or float32). ``rows`` (R,)
    reads only those row positions, in the order given (no repeats); N is then R.
    """
    info = read_info(path)
    wanted = info.layers if layers is None else layers
    missing = [name for name in wanted if name not in info.layers]
    if missing:
        raise CacheError(
            f"{path} has no layer(s) {', '.join(missing)}; it has {', '.join(info.layers)}"
        )
    pick = None if rows is None else _RowPick(rows, info.num_rows)
    with open_cache(path) as cache:
        labels = cache.labels(pick)
        index = cache.index(pick)
        feats = cache.features(wanted, pick)
    return labels, index, feats


@contextlib.contextmanager
def open_cache(path: str | Path) -> Iterator[CacheReader]:
    """A cache file open for reading, closed on leaving the ``with`` block.

    Any failure to read it inside the block (a truncated file, a damaged chunk, a missing
    dataset) raises :class:`CacheError` naming the file and saying to extract it again. The file
    is not validated here: :func:`read_info` does that (call it first, as discovery does).
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            yield CacheReader(path, f)
    except (OSError, KeyError) as err:
        raise CacheError(
            f"cannot read cache file {path}: {err}; delete it and extract again"
        ) from err


class CacheReader:
    """An open cache file (from :func:`open_cache`): its attributes, labels, index, layer widths
    and features, each read on request (one open serves every read of a file)."""

    def __init__(self, path: Path, file: h5py.File):
        self.path = path
        self.file = file

    def attrs(self) -> dict:
        """The file's attributes, decoded (str, lists of str, Python numbers)."""
        return {k: _decode(v) for k, v in self.file.attrs.items()}

    def num_rows(self) -> int:
        """N, the rows of ``labels`` (-1 where the file has none)."""
        return int(self.file["labels"].shape[0]) if "labels" in self.file else -1

    def labels(self, pick: _RowPick | None = None) -> np.ndarray:
        """``labels`` (N,) int64 (or the picked rows)."""
        return self._read(self.file["labels"], pick).astype(np.int64)

    def index(self, pick: _RowPick | None = None) -> np.ndarray:
        """``index`` (N,) int64: the dataset item of each row (or of the picked rows)."""
        return self._read(self.file["index"], pick).astype(np.int64)

    def width(self, layer: str) -> int:
        """D, the width of ``layer``'s features, without reading them."""
        return int(self.file["features"][layer].shape[1])

    def features(
        self, layers: Sequence[str], pick: _RowPick | None = None
    ) -> dict[str, np.ndarray]:
        """``{layer: (N, D) features}`` in the dtype they are stored in (float16 or float32)."""
        return {name: self._read(self.file["features"][name], pick) for name in layers}

    @staticmethod
    def _read(dset: h5py.Dataset, pick: _RowPick | None) -> np.ndarray:
        return dset[()] if pick is None else pick(dset)


class _RowPick:
    """Read some rows of (N, ...) datasets in a given order: h5py selects increasing positions
    only, and a selection of many rows is quicker read whole and indexed in memory."""

    def __init__(self, rows: np.ndarray, num_rows: int):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or len(np.unique(rows)) != len(rows):
            raise ValueError("rows must be distinct row positions, shape (R,)")
        if len(rows) and (rows.min() < 0 or rows.max() >= num_rows):
            raise ValueError(f"rows outside 0..{num_rows - 1}")
        self.order = np.argsort(rows, kind="stable")
        self.sorted = rows[self.order]
        self.whole = 4 * len(rows) >= num_rows

    def __call__(self, dset: h5py.Dataset) -> np.ndarray:
        data = dset[()][self.sorted] if self.whole else dset[self.sorted]
        out = np.empty_like(data)
        out[self.order] = data
        return out


def find_caches(
    cache_dir: str | Path,
    model_keys: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    *,
    on_bad: Callable[[CacheError], None] | None = None,
) -> list[CacheInfo]:
    """Every complete cache file under ``cache_dir`` (optionally only some model keys / tasks).

    Unfinished ``.h5.partial`` files are never returned. A file that cannot be used raises its
    :class:`CacheError` (:func:`read_info`), or is passed to ``on_bad`` and left out where one is
    given; a broken file of a task other than ``tasks`` name is left out silently (it is not this
    caller's concern). A model key or task in ``model_keys`` / ``tasks`` that the cache does not
    hold raises :class:`UnknownNameError` naming what it holds.
    """
    root = Path(cache_dir)
    if root.is_file():
        raise CacheError(f"--cache {root} is a file; give the cache folder that extract wrote")
    if not root.is_dir():
        raise CacheError(f"cache folder {root} does not exist; run `layerprobe extract` first")
    found = []
    for path in sorted(root.rglob(f"*{SUFFIX}")):
        key_dir = path.relative_to(root).parts[0]
        if model_keys and key_dir not in model_keys:
            continue
        try:
            info = read_info(path)
        except CacheError as err:
            if tasks and all(
                path.parent != cache_path(root, key_dir, t, split="x").parent for t in tasks
            ):
                continue
            if on_bad is None:
                raise
            on_bad(err)
            continue
        found.append(info)
    _check_filters(found, model_keys, tasks, root)
    return [
        info
        for info in found
        if (not model_keys or info.model_key in model_keys) and (not tasks or info.task in tasks)
    ]


def _check_filters(
    found: list[CacheInfo],
    model_keys: Sequence[str] | None,
    tasks: Sequence[str] | None,
    root: Path,
) -> None:
    """:class:`UnknownNameError` for a wanted model key or task that no file of ``found`` has."""
    have_keys = {info.model_key for info in found}
    have_tasks = {info.task for info in found}
    for key in model_keys or []:
        if key not in have_keys:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise UnknownNameError(
                f"no cache for model key {key!r} in {root}.{did_you_mean(key, present)}"
                f" Model keys there: {', '.join(present) or 'none'}."
            )
    for task in tasks or []:
        if task not in have_tasks:
            raise UnknownNameError(
                f"no cache for task {task!r} in {root}.{did_you_mean(task, have_tasks)}"
                f" Tasks there: {', '.join(sorted(have_tasks)) or 'none'}."
            )


def read_upstream(
    cache_dir: str | Path, model_key: str, weights_sha256: str | None = None
) -> dict | None:
    """The upstream accuracy recorded by ``layerprobe upstream`` for a model key, or None.

    Reads ``<cache_dir>/<model_key>/upstream.json`` (``upstream_task``, ``upstream_accuracy``,
    ``split``, ``weights_sha256`` …). Without one there, and given ``weights_sha256``, a record
    under another key of the same weights is used (the same model probed with another pooling or
    resize mode). A record that exists but is damaged or absurd (not JSON, not an object, an
    accuracy outside [0, 1] or not finite, no task) raises :class:`CacheError` naming the file
    (:func:`check_upstream_record`): it is never copied into results, nor silently ignored.
    """
    root = Path(cache_dir)
    record = _read_upstream_file(root / model_key / UPSTREAM_FILE)
    if record is None and weights_sha256:
        for path in sorted(root.glob(f"*/{UPSTREAM_FILE}")):
            other = _read_upstream_file(path)
            if other is not None and other.get("weights_sha256") == weights_sha256:
                return other
    return record


def check_upstream_record(record, path: str | Path) -> dict:
    """``record`` if it is an upstream record a result may carry: a JSON object with a non-empty
    ``upstream_task`` and a finite ``upstream_accuracy`` in [0, 1]; else :class:`CacheError`."""
    fix = "measure it again with `layerprobe upstream MODEL --task T --cache CACHE`, or delete it"
    if not isinstance(record, dict):
        raise CacheError(f"upstream record {path} is not a JSON object; {fix}")
    accuracy = record.get("upstream_accuracy")
    if (
        isinstance(accuracy, bool)
        or not isinstance(accuracy, int | float)
        or not math.isfinite(accuracy)
        or not 0 <= accuracy <= 1
    ):
        raise CacheError(
            f"upstream record {path} has upstream_accuracy {accuracy!r}, not a number in [0, 1]; "
            f"{fix}"
        )
    task = record.get("upstream_task")
    if not isinstance(task, str) or not task:
        raise CacheError(f"upstream record {path} names no upstream_task; {fix}")
    return record


def _read_upstream_file(path: Path) -> dict | None:
    """A checked upstream record, or None where there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CacheError(
            f"cannot read upstream record {path} ({err}); fix its permissions"
        ) from err
    try:
        record = json.loads(text)
    except ValueError as err:
        raise CacheError(
            f"upstream record {path} is not readable JSON ({err}); measure it again with "
            "`layerprobe upstream MODEL --task T --cache CACHE`, or delete it"
        ) from err
    return check_upstream_record(record, path)


def pretrain_with_upstream(info: CacheInfo) -> dict:
    """A cache's ``pretrain`` record, with ``upstream.json``'s task and accuracy filled in where
    the checkpoint recorded no upstream accuracy (a checkpoint's own figure is kept)."""
    own = info.pretrain
    if own.get("upstream_accuracy") is not None:
        return own
    key_dir = next((p for p in info.path.parents if p.name == info.model_key), None)
    if key_dir is None:
        return own
    record = read_upstream(key_dir.parent, info.model_key, info.attrs.get("weights_sha256"))
    if record is None or record.get("upstream_accuracy") is None:
        return own
    return {
        **own,
        "upstream_task": record.get("upstream_task"),
        "upstream_accuracy": record["upstream_accuracy"],
    }
