"""Warnings: every warning layerprobe gives is a Python warning of category
:class:`LayerprobeWarning` (or a subclass), so that Python users can filter it, turn it into an
error or catch it (``pytest.warns``); the command line prints each as one line,
``layerprobe: warning: <message>``, like its other messages (:func:`one_line_warnings`).

Progress and information lines are not warnings (:mod:`layerprobe.progress`).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator


class LayerprobeWarning(UserWarning):
    """Something the user should know that does not stop the work (a skipped file, a random
    initialisation, a fit left out); the message says what and, where it helps, what to do."""


def warn(message: str, category: type[Warning] = LayerprobeWarning, *, stacklevel: int = 1) -> None:
    """Give ``message`` as a warning of ``category``; ``stacklevel`` counts from the caller
    (1: the function that calls :func:`warn`), as :func:`warnings.warn` does."""
    warnings.warn(message, category, stacklevel=stacklevel + 1)


def format_one_line(message, category, filename, lineno, line=None) -> str:
    """A warning as the command line prints it: one line, no source location."""
    return f"layerprobe: warning: {message}\n"


def show_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """:func:`warnings.showwarning` replacement that writes :func:`format_one_line` to stderr."""
    file = sys.stderr if file is None else file
    if file is None:  # no stderr (pythonw)
        return
    with contextlib.suppress(OSError):
        file.write(format_one_line(message, category, filename, lineno))


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Inside the block, warnings are shown as one line on stderr (the filters in force still
    decide which are shown); the warning machinery is restored afterwards, so a command run
    inside a Python process (or a test) leaves it as it was."""
    with warnings.catch_warnings():
        warnings.showwarning = show_one_line
        yield
