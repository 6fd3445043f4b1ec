"""Atomic writes: a file is written under a temporary name beside it and renamed onto its own
name only once complete, so a reader sees the old file or the new one, never half of one.

The temporary name starts with a dot (``.<name>.<pid>-<thread>.tmp``): readers that list a
folder skip it, and two processes (or threads) writing the same file never share one. On failure
it is removed and the old file, if any, is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: str | Path) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under (same folder, dot first)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_native_id()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success rename it onto ``path``.

    Parameters
    ----------
    path : the file to write (replaced if it exists).
    fsync : flush the temporary file to disk before the rename, so a crash cannot leave an
        empty file under the final name.
    mkdir : make ``path``'s folder (with its parents) first.

    Yields
    ------
    Path : where the body writes the whole file. If the body raises, the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes, **kw) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`); returns ``path``."""
    with atomic_path(path, **kw) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8", **kw) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`); returns ``path``."""
    with atomic_path(path, **kw) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_json_atomic(path: str | Path, value, *, indent: int | None = None, **kw) -> Path:
    """Write ``value`` as JSON (``default=str``) to ``path`` atomically; returns ``path``."""
    return write_text_atomic(path, json.dumps(value, indent=indent, default=str), **kw)
