"""A job's state on disk: one small record file per finished, failed or running unit, and a lock.

Layout under ``<job dir>/state/``::

    done/<stage>/<unit id>       JSON: outputs (with stamps and tokens), inputs, seconds, host,
                                 finished_at (see :mod:`layerprobe.jobs.verify`)
    index.pkl                    the done records as the check last read them
    failed/<stage>/<unit id>     JSON: error (one line), log, attempts, host, finished_at
    running/<stage>/<unit id>    JSON: host, pid, started_at, log
    logs/<stage>/<unit id>.log   everything the unit printed, every attempt

Records are written by the process that ran the unit (a local worker or a Slurm task), under
a temporary name then renamed, so the only coordination is files: a status is a directory
listing per stage plus a ``stat`` of each done unit's outputs, and a killed run leaves at
worst a stale ``running`` record, which the next run clears.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from layerprobe.errors import UserError
from layerprobe.runtime.atomic import write_json_atomic

KINDS = ("done", "failed", "running")


class JobBusy(UserError):
    """Another ``layerprobe run`` of the same job holds its lock."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class State:
    """The records of one job folder."""

    def __init__(self, job_dir: str | Path):
        self.job_dir = Path(job_dir)
        self.root = self.job_dir / "state"

    def path(self, kind: str, stage: str, uid: str) -> Path:
        return self.root / kind / stage / uid

    def log_path(self, stage: str, uid: str) -> Path:
        return self.root / "logs" / stage / f"{uid}.log"

    def ids(self, kind: str, stage: str) -> set[str]:
        """Ids of the units with a ``kind`` record in ``stage`` (one directory listing)."""
        try:
            return {n for n in os.listdir(self.root / kind / stage) if not n.startswith(".")}
        except FileNotFoundError:
            return set()

    def read(self, kind: str, stage: str, uid: str) -> dict | None:
        try:
            return json.loads(self.path(kind, stage, uid).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write(self, kind: str, stage: str, uid: str, *, record: dict) -> None:
        """Write a record atomically (temporary name in the same folder, then rename)."""
        write_json_atomic(self.path(kind, stage, uid), record)

    def remove(self, kind: str, stage: str, uid: str) -> None:
        self.path(kind, stage, uid).unlink(missing_ok=True)

    def started(self, stage: str, uid: str) -> None:
        self.write(
            "running",
            stage,
            uid,
            record={
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": now(),
                "log": str(self.log_path(stage, uid)),
            },
        )

    def succeeded(self, stage: str, uid: str, record: dict) -> None:
        self.write(
            "done", stage, uid, record=record | {"host": socket.gethostname(), "finished_at": now()}
        )
        self.remove("failed", stage, uid)
        self.remove("running", stage, uid)

    def failed(self, stage: str, uid: str, record: dict) -> None:
        self.write(
            "failed",
            stage,
            uid,
            record=record | {"host": socket.gethostname(), "finished_at": now()},
        )
        self.remove("running", stage, uid)

    def clear_running(self) -> int:
        """Remove every running record (stale once this process holds the job lock)."""
        count = 0
        for stage_dir in (self.root / "running").glob("*"):
            for path in stage_dir.iterdir():
                path.unlink(missing_ok=True)
                count += 1
        return count


class JobLock:
    """``fcntl.flock`` on ``<job dir>/lock``, holding a JSON note of who holds it.

    A second ``run`` of the same job (from any process on a file system with working
    ``flock``) is refused with :class:`JobBusy`, naming the holder.
    """

    def __init__(self, job_dir: str | Path, job_name: str):
        self.path = Path(job_dir) / "lock"
        self.job_name = job_name
        self.fd: int | None = None

    def __enter__(self) -> JobLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note = _note(fd)
            os.close(fd)
            raise JobBusy(
                f"job {self.job_name!r} is already running ({describe(note)}; lock {self.path}); "
                "wait for it to finish, or stop that process, then run again"
            ) from None
        note = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(note).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def lock_holder(job_dir: str | Path) -> dict | None:
    """The note of the process holding the job's lock, or None when no run holds it."""
    path = Path(job_dir) / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _note(fd) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _note(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, json.JSONDecodeError):
        return {}


def describe(note: dict | None) -> str:
    """``pid 123 on host since T`` from a lock note."""
    if not note:
        return "holder unknown"
    return (
        f"pid {note.get('pid', '?')} on {note.get('host', '?')} since {note.get('started_at', '?')}"
    )
