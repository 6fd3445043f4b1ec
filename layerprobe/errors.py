"""Errors a user can cause.

Every error that bad input can trigger is a :class:`UserError` subclass whose message
is one line that says what is wrong and what to do. The CLI prints that line and
exits with code 2, without a traceback. Bugs still raise ordinary exceptions.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path


class UserError(Exception):
    """Base class of every error a user can fix by changing the input."""

    exit_code = 2


class UnknownNameError(UserError, KeyError):
    """A model, layer, task or namespace that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(UserError):
    """Missing, empty, corrupt or inconsistent data (datasets, images, features)."""


class CacheError(UserError):
    """A feature cache that is missing, incomplete, foreign or of another format version."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the architecture."""


class ConfigError(UserError):
    """An invalid option value, option combination, or job file."""


class EnvironmentProblem(UserError):
    """Something missing from the machine: a GPU, an optional package, disk space, network."""


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (at most 200 characters), or its type name if it has none."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def close_names(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidates that look like ``name`` (for "did you mean" hints)."""
    candidates = list(candidates)
    hits = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if len(hits) < n:  # substring matches catch 'vit_small' -> 'vit_small_patch16_224'
        hits += [c for c in candidates if name.lower() in c.lower() and c not in hits][
            : n - len(hits)
        ]
    return hits


def did_you_mean(name: str, candidates: Iterable[str], n: int = 5) -> str:
    """A ' Did you mean: a, b?' suffix, or '' when nothing is close."""
    hits = close_names(name, candidates, n)
    return f" Did you mean: {', '.join(hits)}?" if hits else ""


def check_folder(path: str | Path, option: str) -> Path:
    """Raise :class:`ConfigError` if the output folder ``path`` (given as ``option``) cannot be a
    folder because it, or the nearest part of its path that exists, is a file."""
    path = Path(path)
    try:
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
    except PermissionError as err:
        raise ConfigError(
            f"{option} {path}: permission denied on the way there ({err.filename}); give a "
            "folder you can reach and write to"
        ) from err
    if existing is not None and not existing.is_dir():
        raise ConfigError(
            f"{option} {path}: {existing} is a file, not a folder; give {option} a folder path"
        )
    return path


def check_writable(path: str | Path, option: str, *, create: bool = True) -> Path:
    """Make sure the output folder ``path`` can be written, before any work is done.

    With ``create`` the folder is made (with its parents) and a byte is written there; without,
    nothing is left behind: the byte goes to a temporary file in ``path`` or, where it does not
    exist yet, in the nearest folder above it that does (where it would be made). An unwritable
    place raises :class:`ConfigError` naming ``option``; a full disk :class:`EnvironmentProblem`.
    """
    import errno
    import os
    import tempfile

    path = check_folder(path, option)
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
            where = path
        else:
            where = next(p for p in (path, *path.parents) if p.exists())
        fd, name = tempfile.mkstemp(prefix=".write-check.", dir=where)
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EnvironmentProblem(
                f"{option} {path}: no space left on its device ({err.strerror}); free some space "
                "or give a folder on another disk"
            ) from err
        raise ConfigError(
            f"{option} {path} is not writable ({err.strerror or err}); give a folder you can "
            "write to"
        ) from err
    return path


def missing_folders(path: str | Path) -> list[Path]:
    """``path`` and its parents that do not exist (deepest first), up to the first that does or
    that cannot be looked at (permission denied: then nothing above it is ours to remove)."""
    missing = []
    for p in (Path(path), *Path(path).parents):
        try:
            if p.exists():
                break
        except OSError:
            return []
        missing.append(p)
    return missing


@contextlib.contextmanager
def removed_if_failed(path: str | Path) -> Iterator[Path]:
    """Run the body; if it raises, remove the folders of ``path`` (it and its parents) that did
    not exist before and are empty now, so a failed command leaves no empty output folder."""
    path = Path(path)
    made = missing_folders(path)
    try:
        yield path
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): keep it and what is above it
        raise


def available_memory() -> int | None:
    """Bytes of memory this machine can give a new allocation now (``MemAvailable`` of
    ``/proc/meminfo``, else the free physical pages), or None when the system does not say."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(need: float, what: str, fix: str) -> None:
    """Raise :class:`EnvironmentProblem` at once when ``what`` needs (at least) ``need`` bytes of
    memory and the machine has fewer available (:func:`available_memory`); ``fix`` says what to
    do, e.g. ``"give fewer --seeds"``."""
    free = available_memory()
    if free is not None and need > free:
        raise EnvironmentProblem(
            f"{what} needs at least {_size(need)} of memory, more than the {_size(free)} "
            f"available on this machine; {fix}"
        )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"
