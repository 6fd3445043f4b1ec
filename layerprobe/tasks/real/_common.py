"""Shared pieces of the real-dataset loaders: one `RealDataset` record per dataset, the fixed
split arithmetic, and registration of ``<name>`` (full splits) and ``vtab1k/<name>``.

Split conventions (see ``layerprobe/tasks/real/__init__.py`` for the table):

* ``<name>``: ``train``, ``val`` and ``test`` as VTAB defines them on the full data (for a
  dataset without an official validation split VTAB carves ``val`` out of the official train
  split by percentage; TFDS stores examples in a shuffled order, so where VTAB takes
  ``train[:p%]`` we take the first p% of one fixed permutation, seed 0, of the split).
* ``vtab1k/<name>``: ``train`` = 800 examples of the full ``train`` (VTAB's ``train800``),
  ``val`` = 200 examples of the full ``val`` (``val200``), ``test`` = the full ``test`` split.
  The 800 and 200 are the first of one fixed permutation (seed 0), as TFDS's ``train[:800]``
  is the first 800 of a shuffled file; indices are kept sorted for file locality.
  When the VTAB-1k file-list release is present (``DIR/vtab-1k/<folder>/{train800,val200,
  test}.txt``, lines ``<image path relative to the folder> <label>``, as circulated with the
  NOAH / VPT code), ``vtab1k/<name>`` reads those exact examples instead.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit, SplitData, Task
from layerprobe.tasks.registry import register_task

SPLITS = ("train", "val", "test")
VTAB_TRAIN, VTAB_VAL = 800, 200
SPLIT_SEED = 0  # the one seed behind every fixed split permutation

# The VTAB-1k file-list release: one folder per task, with these lists.
VTAB1K_ROOT = "vtab-1k"
VTAB1K_LISTS = {"train": "train800.txt", "val": "val200.txt", "test": "test.txt"}
VTAB1K_DIRS = {
    "cifar100": "cifar",
    "caltech101": "caltech101",
    "dtd": "dtd",
    "flowers102": "oxford_flowers102",
    "pets": "oxford_iiit_pet",
    "svhn": "svhn",
    "sun397": "sun397",
    "pcam": "patch_camelyon",
    "eurosat": "eurosat",
    "resisc45": "resisc45",
    "retinopathy": "diabetic_retinopathy",
    "clevr_count": "clevr_count",
    "clevr_distance": "clevr_dist",
    "dmlab": "dmlab",
    "kitti_distance": "kitti",
    "dsprites_location": "dsprites_loc",
    "dsprites_orientation": "dsprites_ori",
    "smallnorb_azimuth": "smallnorb_azi",
    "smallnorb_elevation": "smallnorb_ele",
}


class SubsetSplit(SplitData):
    """Rows ``indices`` of another split (labels are taken without touching images)."""

    def __init__(self, base: SplitData, indices: np.ndarray):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = base.labels[self.indices]

    def load_image(self, i: int) -> Image.Image:
        return self.base.load_image(int(self.indices[i]))

    def describe_item(self, i: int) -> str:
        return self.base.describe_item(int(self.indices[i]))


class LazyArraySplit(SplitData):
    """Images held in a big array that is read only when the first image is asked for.

    ``fetch()`` returns an array indexable by row (a memmap or an in-memory array) of
    (H, W) or (H, W, 3) uint8 images; ``scale`` multiplies pixel values (dSprites stores 0/1).
    ``fetch`` should be picklable (a module-level function or a ``functools.partial`` of one).
    """

    def __init__(
        self,
        fetch: Callable[[], np.ndarray],
        labels: np.ndarray,
        rows: np.ndarray | None = None,
        scale: int = 1,
    ):
        self._fetch = fetch
        self._images: np.ndarray | None = None
        self.labels = np.asarray(labels, dtype=np.int64)
        self.rows = (
            np.arange(len(self.labels)) if rows is None else np.asarray(rows, dtype=np.int64)
        )
        self.scale = scale

    def __getstate__(self):  # picklable for spawned DataLoader workers: refetch there
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    def load_image(self, i: int) -> Image.Image:
        if self._images is None:
            self._images = self._fetch()
        img = np.asarray(self._images[int(self.rows[i])])
        if self.scale != 1:
            img = img * np.uint8(self.scale)
        return Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).convert("RGB")


class LazyNames(Sequence):
    """``n`` class names that are looked up only when first read (e.g. from torchvision)."""

    def __init__(self, n: int, fetch: Callable[[], Sequence[str]]):
        self._n, self._fetch, self._names = n, fetch, None

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if self._names is None:
            names = list(self._fetch())
            self._names = names if len(names) == self._n else index_names(self._n)
        return self._names[i]


def index_names(n: int) -> list[str]:
    """Class names for datasets whose names live only in the data: ``"0" .. str(n-1)``."""
    return [str(i) for i in range(n)]


# --------------------------------------------------------------------------- split arithmetic
def fixed_permutation(n: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """The fixed order behind every percentage split: ``default_rng(seed).permutation(n)``."""
    return np.random.default_rng(seed).permutation(n)


def percent_split(n: int, *percents: int, seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Cut ``range(n)`` into consecutive parts of one fixed permutation, VTAB-style.

    ``percent_split(n, 90)`` -> [first 90%, rest]; ``percent_split(n, 60, 20)`` -> 60/20/rest.
    Part sizes are ``p * n // 100`` as in task_adaptation; the last part takes the remainder.
    Each part is returned sorted (int64).
    """
    return count_split(n, *(p * n // 100 for p in percents), seed=seed)


def count_split(n: int, *counts: int, seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Like :func:`percent_split` with absolute sizes: ``count_split(5000, 1600, 400)``."""
    perm = fixed_permutation(n, seed)
    parts, start = [], 0
    for c in counts:
        parts.append(np.sort(perm[start : start + c]))
        start += c
    parts.append(np.sort(perm[start:]))
    return [p.astype(np.int64) for p in parts]


def split_by_percent(data: SplitData, *percents: int) -> list[SplitData]:
    """:func:`percent_split` applied to a split: ``train, val = split_by_percent(trainval, 90)``."""
    return [SubsetSplit(data, idx) for idx in percent_split(len(data), *percents)]


def split_by_count(data: SplitData, *counts: int) -> list[SplitData]:
    """:func:`count_split` applied to a split: ``train, val, test = split_by_count(d, 800, 200)``."""
    return [SubsetSplit(data, idx) for idx in count_split(len(data), *counts)]


def first_of_permutation(data: SplitData, k: int) -> SplitData:
    """``k`` rows of ``data`` (the first k of its fixed permutation), sorted: VTAB's ``[:k]``."""
    return SubsetSplit(data, np.sort(fixed_permutation(len(data))[:k]))


def sorted_pairs(paths: Sequence, labels: Sequence[int]) -> tuple[list[str], np.ndarray]:
    """Sort (path, label) pairs by path, so that file listings are the same on every machine."""
    order = sorted(range(len(paths)), key=lambda i: str(paths[i]))
    return [str(paths[i]) for i in order], np.asarray([labels[i] for i in order], dtype=np.int64)


# --------------------------------------------------------------------------- errors
# What a damaged or truncated file raises while being parsed, and the libraries whose own error
# classes (scipy's MatReadError, h5py's, PIL's) mean the same.
PARSE_ERRORS = (OSError, ValueError, LookupError, EOFError, pickle.UnpicklingError, RuntimeError)
PARSER_LIBRARIES = ("scipy", "h5py", "PIL")


@contextlib.contextmanager
def reading(path: str | os.PathLike, url: str = "") -> Iterator[None]:
    """Turn a failure to parse a data file into a one-line :class:`DataError` naming the file."""
    try:
        yield
    except DataError:
        raise
    except Exception as err:
        library = type(err).__module__.split(".")[0]
        if not isinstance(err, PARSE_ERRORS) and library not in PARSER_LIBRARIES:
            raise
        where = f"; download it again from {url}" if url else "; replace the file"
        raise DataError(f"cannot read {path}: {type(err).__name__}: {err}{where}") from err


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".ppm")


def scan_class_folders(
    top: Path, classes: Sequence[str] | None = None, where: str = ""
) -> tuple[list[str], np.ndarray]:
    """Image files below ``top/<class>/`` (one level), sorted, with their labels.

    With ``classes`` given, labels index into it and an unknown folder is an error; without,
    the sorted folder names are the classes.
    """
    dirs = sorted(d for d in top.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = list(classes) if classes is not None else [d.name for d in dirs]
    paths, labels = [], []
    for d in dirs:
        label = class_index(names, d.name, where or str(top))
        files = sorted(str(f) for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise DataError(f"{top} holds no images in class folders; expected {top}/<class>/<image>")
    return paths, np.asarray(labels, dtype=np.int64)


def class_index(names: Sequence[str], name: str, where: str) -> int:
    """Index of class ``name``; an unknown class folder raises :class:`DataError`."""
    try:
        return list(names).index(name)
    except ValueError:
        raise DataError(
            f"{where}: unknown class {name!r}; expected one of {', '.join(list(names)[:5])}, ..."
        ) from None


def _count_lines(path: Path) -> int:
    with reading(path), open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def read_file_list(path: Path) -> FileSplit:
    """A ``<image path> <label>`` list (paths relative to the list's folder) as a split."""
    paths, labels = [], []
    with reading(path), open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(
                    f"{path}:{n}: expected '<image path> <label>', got {line.strip()!r}"
                )
            paths.append(path.parent / parts[0])
            labels.append(int(parts[1]))
    return FileSplit(paths, labels)


# --------------------------------------------------------------------------- the record
@dataclass
class RealDataset:
    """One real dataset and how to read its full splits from the data root.

    Parameters
    ----------
    name : registry name of the full-split task; ``vtab1k/<name>`` is added when ``vtab``.
    group : ``natural``, ``specialized`` or ``structured``.
    classes : class names, in label order.
    layout : what must exist under the data root, as paths relative to it (checked cheaply,
        without opening files, by ``layerprobe tasks``).
    url : where the data is published (shown when it is missing).
    build : ``build(root) -> {"train": SplitData, "val": ..., "test": ...}``; reads labels only.
    description : one line for ``layerprobe tasks``.
    splits_note : the split convention, shown in the description.
    square : whether its images are square; non-square datasets are squashed to a square
        (the whole image kept) instead of centre-cropped, as the reference protocols do.
    count : optional ``count(root) -> {split: size}`` of the full splits without building them,
        for datasets whose labels are slow to read (used by ``layerprobe tasks`` only).
    """

    name: str
    group: str
    classes: Sequence[str]
    layout: tuple[str, ...]
    url: str
    build: Callable[[Path], dict[str, SplitData]]
    description: str
    splits_note: str = ""
    vtab: bool = False
    square: bool = True
    count: Callable[[Path], dict[str, int]] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def missing(self, root: Path | None) -> list[str]:
        """Expected paths that are absent (all of them, as text, when there is no data root)."""
        if root is None:
            return [f"$LAYERPROBE_DATA/{p}" for p in self.layout]
        return [str(root / p) for p in self.layout if not (root / p).exists()]

    def locate(self, root: Path | None) -> tuple[bool, str]:
        missing = self.missing(root)
        if not missing:
            return True, ""
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        return False, f"{missing[0]}{more}; get it from {self.url}"

    def full_splits(self, root: Path | None) -> dict[str, SplitData]:
        """The full train/val/test splits, built once per data root and process."""
        root = self._require(root)
        key = str(root.resolve())
        if key not in self._cache:
            self._cache.clear()  # keep one root's splits in memory, not every root ever seen
            self._cache[key] = self.build(root)
        return self._cache[key]

    def full_sizes(self, root: Path | None) -> dict[str, int]:
        """Sizes of the full splits, counted without building them where ``count`` allows."""
        root = self._require(root)
        if self.count is not None and str(root.resolve()) not in self._cache:
            return self.count(root)
        return {s: len(d) for s, d in self.full_splits(root).items()}

    def vtab_sizes(self, root: Path | None) -> dict[str, int]:
        lists = self.vtab_lists(root)
        if lists is not None:
            return {s: _count_lines(lists / f) for s, f in VTAB1K_LISTS.items()}
        full = self.full_sizes(root)
        return {
            "train": min(VTAB_TRAIN, full["train"]),
            "val": min(VTAB_VAL, full["val"]),
            "test": full["test"],
        }

    def _require(self, root: Path | None, task: str | None = None) -> Path:
        """The data root, checked to hold the expected layout; else a one-line DataError that
        names what is missing, the layout expected and where the data is published."""
        task = task or self.name
        alt = ""
        if task.startswith("vtab1k/"):
            lists = "{" + ",".join(f.removesuffix(".txt") for f in VTAB1K_LISTS.values()) + "}.txt"
            alt = f" (or the VTAB-1k lists DIR/{VTAB1K_ROOT}/{VTAB1K_DIRS[self.name]}/{lists})"
        layout = ", ".join(f"DIR/{p}" for p in self.layout)
        if root is None:
            raise DataError(
                f"task {task!r} needs a data root DIR: pass --data-root DIR or set LAYERPROBE_DATA; "
                f"it expects {layout}{alt}; get the data from {self.url}"
            )
        missing = self.missing(root)
        if missing:
            more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(
                f"task {task!r}: missing {missing[0]}{more}; expected {layout} with DIR = {root}"
                f"{alt}; get the data from {self.url}"
            )
        return root

    def vtab_lists(self, root: Path | None) -> Path | None:
        """The task's folder of the VTAB-1k file-list release, when all three lists are there."""
        name = VTAB1K_DIRS.get(self.name)
        if root is None or name is None:
            return None
        folder = root / VTAB1K_ROOT / name
        return folder if all((folder / f).is_file() for f in VTAB1K_LISTS.values()) else None

    def vtab_locate(self, root: Path | None) -> tuple[bool, str]:
        if self.vtab_lists(root) is not None:
            return True, ""
        found, what = self.locate(root)
        alt = f"{root or '$LAYERPROBE_DATA'}/{VTAB1K_ROOT}/{VTAB1K_DIRS.get(self.name, self.name)}/train800.txt"
        return found, what if found else f"{what} (or the VTAB-1k lists {alt})"

    def vtab_split(self, split: str, root: Path | None) -> SplitData:
        lists = self.vtab_lists(root)
        if lists is not None:
            path = lists / VTAB1K_LISTS[split]
            key = (str(path.resolve()), path.stat().st_mtime_ns)  # a rewritten list is read again
            if key not in self._cache:
                self._cache[key] = read_file_list(path)
            return self._cache[key]
        full = self.full_splits(self._require(root, f"vtab1k/{self.name}"))
        if split == "train":
            return first_of_permutation(full["train"], VTAB_TRAIN)
        if split == "val":
            return first_of_permutation(full["val"], VTAB_VAL)
        return full["test"]


def register_dataset(ds: RealDataset) -> None:
    """Register ``ds.name`` (full splits) and, for VTAB datasets, ``vtab1k/<name>``."""
    if ds.vtab and ds.name not in VTAB1K_DIRS:
        raise ValueError(f"VTAB task {ds.name!r} has no entry in VTAB1K_DIRS")
    note = f" [{ds.splits_note}]" if ds.splits_note else ""
    register_task(
        Task(
            name=ds.name,
            group=ds.group,
            classes=ds.classes,
            splits=SPLITS,
            loader=lambda split, root: ds.full_splits(root)[split],
            description=f"{ds.description}{note}",
            locate=ds.locate,
            extra={"url": ds.url, "layout": ds.layout, "convention": "full"},
            count=lambda split, root: ds.full_sizes(root)[split],
            resize=None if ds.square else "squash",
        )
    )
    if ds.vtab:
        register_task(
            Task(
                name=f"vtab1k/{ds.name}",
                group=ds.group,
                classes=ds.classes,
                splits=SPLITS,
                loader=ds.vtab_split,
                description=f"{ds.description} [VTAB-1k: train800 of train, val200 of val, full test]",
                locate=ds.vtab_locate,
                extra={"url": ds.url, "layout": ds.layout, "convention": "vtab1k"},
                count=lambda split, root: ds.vtab_sizes(root)[split],
                resize="squash",  # VTAB resizes every image to 224 x 224, no crop
            )
        )


def torchvision_dataset(cls, where: str | os.PathLike, url: str, **kwargs):
    """Build a torchvision dataset with ``download=False``; its 'not found' becomes a DataError."""
    try:
        return cls(download=False, **kwargs) if "download" in _init_params(cls) else cls(**kwargs)
    except RuntimeError as err:
        raise DataError(
            f"torchvision {cls.__name__} could not read {where}: {err}; get the data from {url}"
        ) from err


def _init_params(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)
