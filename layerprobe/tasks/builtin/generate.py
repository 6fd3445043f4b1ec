"""Turning a spec into a split: balanced labels, per-chunk random streams, memory and disk caches.

A split depends only on (task, split, image size, seed, GENERATOR_VERSION): its random
stream is ``SeedSequence([seed, crc32(task), split index])``, and it is drawn in chunks
(:func:`chunk_size` images), each with a child stream of its own, so memory stays bounded
at any image size and every split can be made without making the others.
"""

from __future__ import annotations

import threading
import warnings
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from layerprobe.errors import CacheError, DataError
from layerprobe.runtime.atomic import atomic_path
from layerprobe.runtime.warn import LayerprobeWarning
from layerprobe.tasks.builtin.spec import SPLITS, BuiltinSpec

# Bump when any generator changes its output: old disk caches are then ignored.
GENERATOR_VERSION = 1
CHUNK = 512
PROGRESS_MIN_VALUES = 300_000_000  # uint8 values in a split (about 100k images at 32 px)
MEMORY_BUDGET_BYTES = 1 << 30  # splits kept in memory, least recently used dropped first

_memory: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_memory_lock = threading.Lock()


def generate_split(
    spec: BuiltinSpec, split: str, image_size: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one split afresh (no cache).

    Returns
    -------
    images : (N, S, S, 3) uint8, N = per-class count x number of classes.
    labels : (N,) int64, exactly ``per_class`` of each class, in a shuffled order.
    """
    if split not in SPLITS:
        raise DataError(
            f"task builtin/{spec.name} has no split {split!r}; it has {', '.join(SPLITS)}"
        )
    n_per = spec.per_class[SPLITS.index(split)]
    root = np.random.SeedSequence([seed, zlib.crc32(spec.name.encode()), SPLITS.index(split)])
    order_seq, chunks_seq = root.spawn(2)
    labels = np.repeat(np.arange(len(spec.classes), dtype=np.int64), n_per)
    labels = np.random.default_rng(order_seq).permutation(labels)
    step = len(labels) if spec.whole_split else chunk_size(image_size)
    starts = range(0, len(labels), step)
    images = np.empty((len(labels), image_size, image_size, 3), np.uint8)
    # A progress bar only when generation takes a while (large images) and on a terminal.
    slow = images.size > PROGRESS_MIN_VALUES
    chunks = zip(starts, chunks_seq.spawn(len(starts)), strict=True)
    for start, seq in tqdm(
        chunks,
        total=len(starts),
        desc=f"builtin/{spec.name} {split}",
        unit="chunk",
        leave=False,
        disable=None if slow else True,
    ):
        batch = labels[start : start + step]
        out = spec.generate(batch, np.random.default_rng(seq), size=image_size, split=split)
        if out.shape != (len(batch), image_size, image_size, 3) or out.dtype != np.uint8:
            raise RuntimeError(f"generator of {spec.name} returned {out.shape} {out.dtype}")
        images[start : start + step] = out
    return images, labels


def chunk_size(image_size: int) -> int:
    """Images drawn per call: :data:`CHUNK` at 32 px, fewer for larger ones (about 0.5 M pixels per chunk)."""
    return max(16, min(CHUNK, CHUNK * 32 * 32 // (image_size * image_size)))


def load_split(
    spec: BuiltinSpec, split: str, image_size: int, *, seed: int, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One split through the caches: memory (LRU by bytes), then ``cache_dir`` if given, then generate.

    The arrays returned are read-only (they are shared with the cache).
    """
    key = (spec.name, split, image_size, seed)
    with _memory_lock:
        if key in _memory:
            _memory.move_to_end(key)
            return _memory[key]
    path = _disk_path(cache_dir, *key) if cache_dir is not None else None
    arrays = _read_disk(path) if path is not None else None
    if arrays is None:
        arrays = generate_split(spec, split, image_size, seed=seed)
        if path is not None:
            _write_disk(path, *arrays)
    for a in arrays:
        a.flags.writeable = False
    _remember(key, arrays)
    return arrays


def clear_memory() -> None:
    """Drop every split held in memory."""
    with _memory_lock:
        _memory.clear()


def _remember(key: tuple, arrays: tuple[np.ndarray, np.ndarray]) -> None:
    if _nbytes(arrays) > MEMORY_BUDGET_BYTES:
        return
    with _memory_lock:
        _memory[key] = arrays
        while sum(_nbytes(v) for v in _memory.values()) > MEMORY_BUDGET_BYTES:
            _memory.popitem(last=False)


def _nbytes(arrays: tuple[np.ndarray, np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays if not isinstance(a, np.memmap))


def _disk_path(cache_dir: Path, name: str, split: str, image_size: int, seed: int) -> Path:
    folder = Path(cache_dir) / f"v{GENERATOR_VERSION}" / name.replace("/", "_")
    return folder / f"{split}-{image_size}px-seed{seed}"


def _read_disk(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    img_path, lab_path = path.with_suffix(".images.npy"), path.with_suffix(".labels.npy")
    if not (img_path.exists() and lab_path.exists()):
        return None
    try:
        images = np.load(img_path, mmap_mode="r")
        labels = np.load(lab_path)
    except (OSError, ValueError) as err:
        warnings.warn(
            f"ignoring unreadable built-in cache {img_path} ({err}); regenerating",
            LayerprobeWarning,
            stacklevel=3,
        )
        return None
    if images.ndim != 4 or len(images) != len(labels):
        warnings.warn(
            f"ignoring inconsistent built-in cache {img_path}; regenerating",
            LayerprobeWarning,
            stacklevel=3,
        )
        return None
    return images, labels


def _write_disk(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    # Each file is written under a temporary name and renamed: readers never see half a file.
    try:
        for suffix, array in ((".labels.npy", labels), (".images.npy", images)):
            with atomic_path(path.with_suffix(suffix)) as tmp, open(tmp, "wb") as f:
                np.save(f, array)
    except OSError as err:
        raise CacheError(
            f"cannot write the built-in task cache under {path.parent}: {err}; "
            "choose a writable folder with $LAYERPROBE_BUILTIN_CACHE or unset it"
        ) from err
