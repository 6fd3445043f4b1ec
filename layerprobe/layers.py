"""Layer selection, one meaning everywhere (`layers`, `extract`, `probe`, job files).

A selection is ``"all"``, a layer name, a glob, a comma-separated string of those, or a list.
In a glob ``*`` matches within one dotted part of a name (``layer*`` matches ``layer1`` but not
``layer1.0``; ``layer*.*`` matches ``layer1.0``), ``**`` matches across parts (``blocks.**``),
``?`` one character, ``[ab]`` one of a set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ALL = "all"
LAYERS_HELP = (
    "layers: all (default), names, or globs, comma-separated; in a glob * stays inside one "
    "dotted part (layer*.* = layer1.0 …) and ** crosses parts (blocks.**)"
)
GLOB_CHARS = "*?["


def split_layers(layers: str | Sequence[str] | None) -> list[str]:
    """The items of a selection (commas split; blanks dropped); ``[]`` for None."""
    if layers is None:
        return []
    items = [layers] if isinstance(layers, str) else list(layers)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def is_all(layers: str | Sequence[str] | None) -> bool:
    """Whether a selection means every default layer."""
    return split_layers(layers) in ([], [ALL])


def is_glob(item: str) -> bool:
    return any(ch in item for ch in GLOB_CHARS)


def glob_regex(pattern: str) -> re.Pattern:
    """The compiled regex of one glob item (see the module docstring)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^.]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^.]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out.append("[" + re.escape(pattern[i + 1 : end]).replace("\\-", "-") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def match_item(item: str, names: Sequence[str]) -> list[str]:
    """The names one item selects, in the order of ``names`` (a plain name matches itself)."""
    if item == ALL:
        return list(names)
    if is_glob(item):
        pattern = glob_regex(item)
        return [n for n in names if pattern.fullmatch(n)]
    return [item] if item in names else []
