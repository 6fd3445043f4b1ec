"""Advisory locks on output files and folders (``fcntl.flock``), naming the process that holds one.

A lock is a hidden side file (``.NAME.lock`` beside a file, or a given path) locked exclusively
and without waiting; it holds a JSON note (``pid``, ``host``, ``started_at``) so that a second
process is refused with a message naming the first. The side file is removed when released,
so a lock taken is only good if the file locked is still the one at the path (same inode after
locking), else it is taken again. Used by the feature cache writer and pre-training run folders.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path


def lock_path(path: str | Path) -> Path:
    """The side file whose lock guards ``path`` (hidden, beside it; removed after use)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def take_lock(where: str | Path, busy: Callable[[dict], Exception]) -> int:
    """Lock the file ``where`` (created if missing) exclusively, without waiting.

    Parameters
    ----------
    where : the lock file itself (see :func:`lock_path`).
    busy : called with the holder's note (``{}`` when unknown) when another process holds the
        lock; the exception it returns is raised.

    Returns
    -------
    int : the descriptor holding the lock; give it to :func:`release_lock`.
    """
    where = Path(where)
    while True:
        fd = os.open(where, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            note = read_note(fd)
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise busy(note) from None
            raise
        try:
            same = os.stat(where).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            note = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(note).encode(), 0)
            return fd
        os.close(fd)  # released and removed by its holder in between: lock the new file


def release_lock(where: str | Path, fd: int) -> None:
    """Remove the lock file ``where`` (while still held) and drop the lock held by ``fd``."""
    Path(where).unlink(missing_ok=True)
    os.close(fd)  # closing the descriptor drops the flock


def read_note(fd: int) -> dict:
    """The JSON note in the lock file open as ``fd`` (``{}`` when empty or unreadable)."""
    try:
        note = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def holder(note: dict) -> str:
    """``process 123 on host since T`` from a lock note (``another process`` when unknown)."""
    if not note.get("pid"):
        return "another process"
    where = f" on {note['host']}" if note.get("host") else ""
    since = f" since {note['started_at']}" if note.get("started_at") else ""
    return f"process {note['pid']}{where}{since}"
