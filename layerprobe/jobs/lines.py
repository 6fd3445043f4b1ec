"""Where a key sits in a job file, for error messages that name the file, the key and the line.

``tomllib`` gives values, not positions, so the line is found by scanning the text: the
``key =`` (or ``key.sub =``) line inside the right ``[table]`` / ``[[table]]`` header.
"""

from __future__ import annotations

import re

from layerprobe.errors import ConfigError

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?$")


def _bare(name: str) -> str:
    """A header or key as written (``"a".b`` -> ``a.b``)."""
    return ".".join(part.strip().strip("\"'") for part in name.split("."))


def key_line(text: str, table: str = "", key: str | None = None, *, index: int = 0) -> int | None:
    """The 1-based line of ``key`` in the ``index``-th ``[table]`` (``""``: before any header).

    Returns the header's line when the key is not written there (e.g. a default broke a rule),
    and None when the table is not in the text at all.
    """
    current, count, header_line = "", {}, None
    found_header = table == ""
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*[.=]") if key else None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            current = _bare(header.group(2))
            count[current] = count.get(current, -1) + 1
            if current == table and count[current] == index:
                found_header, header_line = True, number
            continue
        here = current == table and count.get(current, 0) == index
        if here and key_re and key_re.match(line):
            return number
    return header_line if found_header else None


class JobFileError(ConfigError):
    """A job file that cannot be used: its message starts with ``FILE:LINE:``."""


def job_error(
    path, text: str, message: str, *, table: str = "", key: str | None = None, index: int = 0
) -> JobFileError:
    """A :class:`JobFileError` for ``key`` of ``[table]`` (``index``-th for ``[[table]]``)."""
    line = key_line(text, table, key, index=index) if text else None
    where = f"{path}:{line}" if line else f"{path}"
    return JobFileError(f"{where}: {message}")


def table_name(table: str, key: str | None = None, index: int | None = None) -> str:
    """``[extract] layers`` / ``[[models]] #2 spec`` for messages."""
    head = (
        f"[[{table}]] #{index + 1}"
        if index is not None
        else (f"[{table}]" if table else "top level")
    )
    return f"{head} {key}" if key else head
