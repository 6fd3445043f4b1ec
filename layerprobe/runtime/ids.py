"""Hashing and slugs: the names of units and part files.

These functions name things that live on disk (job units, results parts); their output must
never change, or existing stores and job folders stop reading as done
(``tests/test_runtime.py`` pins known names).
"""

from __future__ import annotations

import hashlib
import json
import re


def canonical_json(value) -> str:
    """``value`` as JSON with sorted keys (non-JSON values by ``str``): the text hashes read."""
    return json.dumps(value, sort_keys=True, default=str)


def short_hash(value, n: int = 8) -> str:
    """``n`` hex digits of the SHA-256 of ``value`` as :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:n]


def slug(text, limit: int = 60) -> str:
    """A file-name-safe readable form of ``text`` (``builtin/count`` -> ``builtin__count``), at
    most ``limit`` characters: ``/`` becomes ``__``, any other character but letters, digits
    and ``._=+-`` becomes ``_``, leading and trailing dots go; ``_`` when nothing is left.
    Not unique on its own: put a hash beside it."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", str(text).replace("/", "__")).strip(".")[:limit] or "_"
