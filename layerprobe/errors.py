"""Errors a user can cause.

Every error that bad input can trigger is a :class:`UserError` subclass whose message
is one line that says what is wrong and what to do. The CLI prints that line and
exits with code 2, without a traceback. Bugs still raise ordinary exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
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


def check_writable(path: str | Path, option: str) -> Path:
    """Make sure the output folder ``path`` exists (created if missing) and can be written,
    before any work is done; :class:`ConfigError` naming ``option`` otherwise."""
    import os
    import tempfile

    path = check_folder(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".write-check.", dir=path)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise ConfigError(
            f"{option} {path} is not writable ({err.strerror or err}); give a folder you can "
            "write to"
        ) from err
    return path
