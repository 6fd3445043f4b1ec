"""`folder:PATH` tasks: an ImageFolder tree (one sub-folder per class, sorted), split `all`.

When PATH itself holds ``train/``, ``val/`` and/or ``test/`` sub-folders, each is a split
with the class folders below it (classes taken from the union, sorted).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from layerprobe.errors import DataError
from layerprobe.tasks.base import FileSplit, Task

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_NAMES = ("train", "val", "test")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def folder_task(path: str | Path) -> Task:
    """Build a task from an ImageFolder tree; raises :class:`DataError` if missing or empty."""
    if not str(path).strip():  # `folder:$DATA` with DATA unset would silently mean the cwd
        raise DataError("folder: needs a path, e.g. folder:./images (one sub-folder per class)")
    root = Path(path).expanduser().resolve()
    if root.is_file():
        raise DataError(
            f"data folder {root} is a file; give a folder with one sub-folder per class"
        )
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; give a folder with one sub-folder per class"
        )
    split_dirs = {s: root / s for s in SPLIT_NAMES if (root / s).is_dir()}
    tops = list(split_dirs.values()) or [root]
    classes = sorted({d.name for top in tops for d in _class_dirs(top)})
    if not classes:
        raise DataError(
            f"data folder {root} has no class sub-folders; put each class's images in a sub-folder"
        )
    splits = tuple(split_dirs) or ("all",)

    def loader(split: str, _data_root: Path | None) -> FileSplit:
        top = split_dirs.get(split, root)
        paths, labels = [], []
        for label, name in enumerate(classes):
            if (top / name).is_dir():
                found = _images(top / name)
                paths += found
                labels += [label] * len(found)
        if not paths:
            raise DataError(
                f"data folder {top} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return FileSplit(paths, labels)

    def fingerprint(split: str | None, content: bool) -> str:
        tops = [split_dirs.get(split, root)] if split else tops_all
        return files_fingerprint([p for top in tops for p in _images(top)], root, content)

    tops_all = list(split_dirs.values()) or [root]
    return Task(
        name=f"folder:{root}",
        group="natural",
        classes=classes,
        splits=splits,
        loader=loader,
        description=f"image folder {root}",
        fingerprinter=fingerprint,
    )


def files_fingerprint(paths: list[Path], root: Path, content: bool = False) -> str:
    """``files-<hash>`` of the sorted relative paths with sizes and modification times (a
    changed, added, removed or renamed image changes it), or with ``content`` of every byte
    (``content-<hash>``: immune to touched-but-equal files, slower: it reads everything)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if content:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        else:
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        digest.update(b"\0")
    return f"{'content' if content else 'files'}-{len(paths)}-{digest.hexdigest()[:16]}"
