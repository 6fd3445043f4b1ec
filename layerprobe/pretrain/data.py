"""The training data path: images decoded once into uint8 arrays, batches augmented as tensors.

A split is decoded once into ``(N, S, S, 3)`` uint8 images (squashed to S x S, bicubic) and
``(N,)`` labels and kept on disk as two ``.npy`` files (written under temporary names, then
renamed), read back memory-mapped: ``<home>/arrays/<task>/<split>-<S>px-<hash>.{images,labels}.npy``
with ``<home>`` = ``$LAYERPROBE_HOME`` or ``~/.cache/layerprobe``. The hash covers the task's
name and fingerprint (the built-in suite's size and seed), the split and the geometry, so a
changed task is decoded afresh. Built-in splits already at S px are taken as they are.

Per step a batch is gathered from the arrays by index (uint8, 1 byte a value), moved to the
device, cropped (zero padding S/8, random offset) and flipped in one gather, then scaled and
normalised exactly as ``ToTensor`` + ``Normalize`` do (so the same image gives the same
floats as the extraction path). Every random draw comes from generators seeded by (seed,
epoch, rank, stream): an epoch's batches do not depend on what ran before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from layerprobe.errors import CacheError, ConfigError, DataError
from layerprobe.runtime.atomic import atomic_path
from layerprobe.tasks.base import ArraySplit, SplitData, Task

DECODE_VERSION = 1
INTERPOLATION = "bicubic"
EVAL_BATCH = 256
IN_MEMORY_BYTES = 4 << 30  # decoded splits up to this size are read into memory, larger ones mapped
# Streams of random numbers, one per use, so that no use shifts another's draws.
ORDER, AUGMENT, TORCH, SUBSET, HEAD = 1, 2, 3, 4, 5


def home_dir() -> Path:
    """``$LAYERPROBE_HOME``, else ``~/.cache/layerprobe``."""
    raw = os.environ.get("LAYERPROBE_HOME", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "layerprobe"


def stream_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (``SeedSequence`` spreads nearby seeds apart)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


# ---------------------------------------------------------------------------------- decoding
def split_arrays(
    task: Task, split: str, image_size: int, *, data_root=None, quiet: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, S, S, 3)`` uint8 and labels ``(N,)`` int64 of one split at ``image_size``.

    Decoded on first use and cached (see module docstring); later calls memory-map the cache.
    """
    folder, stem = _cache_place(task, split, image_size)
    images_path = folder / f"{stem}.images.npy"
    labels_path = folder / f"{stem}.labels.npy"
    cached = _read_cache(images_path, labels_path)
    if cached is not None:
        return cached
    data = task.load(split, data_root)
    if len(data) == 0:
        raise DataError(f"task {task.name!r} split {split!r} has no images; check the data")
    _write_cache(data, image_size, images_path, labels_path, quiet)
    cached = _read_cache(images_path, labels_path)
    if cached is None:  # pragma: no cover - written a moment ago
        raise CacheError(f"cannot read back the decoded images {images_path}; delete it")
    return cached


def _cache_place(task: Task, split: str, image_size: int) -> tuple[Path, str]:
    key = [task.name, task.fingerprint(), split, image_size, INTERPOLATION, DECODE_VERSION]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in task.name)
    return home_dir() / "arrays" / name, f"{split}-{image_size}px-{digest}"


def _read_cache(images_path: Path, labels_path: Path):
    if not (images_path.exists() and labels_path.exists()):
        return None
    try:
        # In memory a batch gathers in microseconds; memory-mapped, in milliseconds.
        small = images_path.stat().st_size <= IN_MEMORY_BYTES
        images = np.load(images_path, mmap_mode=None if small else "r")
        labels = np.load(labels_path)
    except (OSError, ValueError):
        return None  # a damaged file: decode again (and replace it)
    if images.ndim != 4 or len(images) != len(labels):
        return None
    return images, labels.astype(np.int64, copy=False)


def _write_cache(data: SplitData, size: int, images_path: Path, labels_path: Path, quiet: bool):
    """Decode ``data`` into a memory-mapped temporary ``.npy`` and rename it into place."""
    try:
        images_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(labels_path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(data.labels, np.int64))
        with atomic_path(images_path) as tmp:
            out = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(data), size, size, 3))
            _decode_into(out, data, size, quiet)
            out.flush()
            del out
    except OSError as err:
        raise CacheError(
            f"cannot write decoded images under {images_path.parent}: {err}; set $LAYERPROBE_HOME "
            "to a writable folder with room"
        ) from err


def _decode_into(out: np.ndarray, data: SplitData, size: int, quiet: bool) -> None:
    images = getattr(data, "images", None)
    if isinstance(data, ArraySplit) and images is not None and images.shape[1:] == (size, size, 3):
        out[:] = images  # already decoded at this size (the built-in suite)
        return
    from layerprobe.progress import Progress

    workers = min(8, os.cpu_count() or 1) if len(data) > 2000 else 0
    loader = DataLoader(_Squashed(data, size), batch_size=256, num_workers=workers)
    start = 0
    desc = f"decoding {len(data)} images"  # a bar on a terminal, else a line every 30 s
    with Progress(len(loader), desc=desc, unit="batch", quiet=quiet, leave=False) as bar:
        for batch in loader:
            out[start : start + len(batch)] = batch.numpy()
            start += len(batch)
            bar.update()


class _Squashed(Dataset):
    """Item i of a split as a ``(S, S, 3)`` uint8 tensor, the whole image squashed to S x S."""

    def __init__(self, data: SplitData, size: int):
        self.data, self.size = data, size

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        image = self.data.load_image(i).convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())


# ---------------------------------------------------------------------------------- subsets
def balanced_subset(
    labels: np.ndarray,
    fraction: float,
    *,
    seed: int,
    class_names=None,
    num_classes: int | None = None,
) -> np.ndarray:
    """A seeded subset of ``fraction`` of each class (stratified), as sorted indices.

    Each class keeps ``round(fraction * n_c)`` examples, the first of one seeded permutation of
    its indices, so a smaller fraction's subset lies inside a larger one's (same seed).
    A class left empty is an error: the head could never learn it.
    """
    if fraction >= 1:
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(stream_seed(seed, SUBSET))
    num_classes = num_classes or int(labels.max()) + 1
    keep = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        n = int(round(fraction * len(idx)))
        if n == 0:
            name = class_names[c] if class_names is not None else c
            need = 1 / len(idx) if len(idx) else float("nan")
            raise ConfigError(
                f"--data-fraction {fraction:g} leaves class {name!r} ({len(idx)} train images) "
                f"empty; use at least {need:.3g}"
            )
        keep.append(rng.permutation(idx)[:n])
    return np.sort(np.concatenate(keep)).astype(np.int64)


# ---------------------------------------------------------------------------------- batches
class Normalizer:
    """uint8 ``(B, S, S, 3)`` to float ``(B, 3, S, S)``, as ``ToTensor`` + ``Normalize``."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool = False):
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1)
        self.channels_last = channels_last

    def __call__(self, u8: torch.Tensor) -> torch.Tensor:
        x = u8.permute(0, 3, 1, 2)  # a view: NHWC memory is channels_last already
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(dtype=torch.float32, memory_format=fmt).div_(255)
        return x.sub_(self.mean).div_(self.std)


def crop_flip(u8: torch.Tensor, gen: torch.Generator, pad: int) -> torch.Tensor:
    """Random crop of a zero-padded batch and random horizontal flip, as one gather of windows.

    ``u8`` is ``(B, S, S, C)``; offsets and flips are drawn from ``gen`` (CPU) so the result
    does not depend on the device. A flipped crop at offset ``dx`` is the crop of the flipped
    padded image at ``2 * pad - dx``, so every crop is one window of ``[padded, flipped]``
    (``unfold`` views them all without copying). Returns ``(B, S, S, C)`` (a view of NCHW memory).
    """
    b, s = u8.shape[0], u8.shape[1]
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    dx = torch.where(flip, 2 * pad - dx, dx)
    padded = torch.nn.functional.pad(u8, (0, 0, pad, pad, pad, pad))  # C by 0, W and H by pad
    both = torch.stack([padded, padded.flip(2)])  # (2, B, S + 2p, S + 2p, C)
    windows = both.unfold(2, s, 1).unfold(3, s, 1)  # (2, B, 2p + 1, 2p + 1, C, S, S)
    index = [t.to(u8.device) for t in (flip.long(), torch.arange(b), dy, dx)]
    return windows[index[0], index[1], index[2], index[3]].permute(0, 2, 3, 1)


def steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    """Optimizer steps in an epoch over ``n`` images (each rank drops its last partial batch)."""
    return (n // world) // (batch_size // world)


def train_batches(
    images: np.ndarray,
    labels: np.ndarray,
    subset: np.ndarray,
    *,
    batch_size: int,
    epoch: int,
    seed: int,
    rank: int,
    world: int,
    device: torch.device,
    normalize: Normalizer,
    augment: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``(x (B, 3, S, S) float, y (B,) int64)`` on ``device`` for this rank.

    ``batch_size`` is the global batch; each of ``world`` ranks gets ``batch_size // world``.
    The order comes from a ``DistributedSampler`` seeded by (seed, epoch), the augmentation
    from a generator seeded by (seed, epoch, rank).
    """
    local = batch_size // world
    sampler = DistributedSampler(
        range(len(subset)),
        num_replicas=world,
        rank=rank,
        shuffle=True,
        seed=stream_seed(seed, ORDER) >> 2,  # the sampler seeds with seed + epoch
        drop_last=True,
    )
    sampler.set_epoch(epoch)
    order = subset[np.fromiter(sampler, dtype=np.int64)]
    gen = torch.Generator().manual_seed(stream_seed(seed, AUGMENT, epoch, rank))
    pad = max(1, images.shape[1] // 8)
    host = _host_batches(images, labels, order, local, pinned=device.type == "cuda", drop_last=True)
    for u8, y in host:
        u8 = u8.to(device, non_blocking=True)
        if augment:
            u8 = crop_flip(u8, gen, pad)
        yield normalize(u8), y.to(device, non_blocking=True)


def eval_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rank: int,
    world: int,
    device: torch.device,
    normalize: Normalizer,
    batch_size: int = EVAL_BATCH,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's contiguous shard of a split, in order, without augmentation."""
    n = len(labels)
    order = np.arange(n * rank // world, n * (rank + 1) // world, dtype=np.int64)
    for u8, y in _host_batches(images, labels, order, batch_size, pinned=device.type == "cuda"):
        yield normalize(u8.to(device, non_blocking=True)), y.to(device, non_blocking=True)


def _host_batches(images, labels, order, batch_size, *, pinned: bool, drop_last=False):
    """``(uint8 (B, S, S, 3), int64 (B,))`` CPU tensors for consecutive chunks of ``order``;
    with ``pinned`` (CUDA) a background thread gathers ahead into pinned memory."""

    def gather(start: int):
        idx = order[start : start + batch_size]
        u8, y = torch.from_numpy(images[idx]), torch.from_numpy(labels[idx])
        return (u8.pin_memory(), y.pin_memory()) if pinned else (u8, y)

    starts = range(0, len(order) - (batch_size - 1 if drop_last else 0), batch_size)
    starts = [s for s in starts if s < len(order)]
    if not pinned:
        yield from (gather(s) for s in starts)
        return
    yield from _prefetched(gather, starts)


def _prefetched(gather, starts, depth: int = 3):
    """``gather(s)`` for each start, computed ``depth`` batches ahead in a thread."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def work():
        try:
            for s in starts:
                out.put(gather(s))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            out.put(err)
        out.put(done)

    threading.Thread(target=work, daemon=True).start()
    while (item := out.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
