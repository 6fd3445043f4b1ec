"""What `layerprobe tasks` shows: per task its group, classes, split sizes and whether its data
is found, as rows for a text table or JSON.

Finding a task only checks that expected paths exist; sizing a found task reads labels only
(``Task.split_sizes``), never images.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from layerprobe.errors import DataError, UnknownNameError, UserError, did_you_mean
from layerprobe.tasks.base import Task, resolve_data_root
from layerprobe.tasks.registry import get_task, list_tasks

JSON_KEYS = ("name", "group", "num_classes", "splits", "found", "description")


@dataclass
class TaskSummary:
    """One row of ``layerprobe tasks``; ``splits`` maps split -> size (None when not found)."""

    name: str
    group: str
    num_classes: int
    splits: dict[str, int | None]
    found: bool
    missing: str
    description: str

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in JSON_KEYS}


def summarize(task: Task, data_root: str | os.PathLike | None = None) -> TaskSummary:
    """Find a task's data and, when found, the size of each split."""
    found, what = task.find(data_root)
    sizes: dict[str, int | None] = dict.fromkeys(task.splits)
    if found:
        try:
            sizes = dict(task.split_sizes(data_root))
        except UserError as err:  # present but unreadable: say why instead of failing the listing
            found, what = False, str(err)
    return TaskSummary(
        task.name, task.group, task.num_classes, sizes, found, what, task.description
    )


def select_tasks(patterns: Sequence[str] = (), builtin: bool | None = None) -> list[Task]:
    """Registered tasks whose names match any of ``patterns`` (shell-style; all when empty),
    plus the ``folder:PATH`` tasks named among them."""
    folders = [get_task(p) for p in patterns if p.startswith("folder:")]
    patterns = [p for p in patterns if not p.startswith("folder:")]
    tasks = list_tasks(builtin=builtin)
    if not patterns:
        return folders or tasks
    names = [t.name for t in tasks]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise UnknownNameError(
                f"no task matches {pattern!r}.{did_you_mean(pattern, names)} "
                "Run `layerprobe tasks` to list them."
            )
    return folders + [t for t in tasks if any(fnmatch.fnmatchcase(t.name, p) for p in patterns)]


def summarize_tasks(
    data_root: str | os.PathLike | None = None,
    patterns: Sequence[str] = (),
    builtin: bool | None = None,
) -> list[TaskSummary]:
    """:func:`summarize` for every selected task, sorted by name.

    A ``data_root`` given (not taken from ``$LAYERPROBE_DATA``) that is not an existing folder
    raises :class:`~layerprobe.errors.DataError`: a typo would otherwise list every real task
    as missing.
    """
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            what = "a file, not a folder" if root.exists() else "not an existing folder"
            raise DataError(
                f"--data-root {data_root} is {what}; give the folder your datasets live in, or "
                "leave it out to list the built-in tasks and $LAYERPROBE_DATA's"
            )
    return [summarize(t, data_root) for t in select_tasks(patterns, builtin)]


def _sizes_text(splits: dict[str, int | None]) -> str:
    return ", ".join(s if n is None else f"{s} {n}" for s, n in splits.items())


def format_table(
    rows: Sequence[TaskSummary], data_root: str | os.PathLike | None = None, verbose: bool = False
) -> str:
    """A plain-text table, one task per line, headed by the data root in use; ``verbose`` adds
    each task's description (what it asks and its split convention) on the line below."""
    root = resolve_data_root(data_root)
    where = (
        str(root) if root is not None else "not set (pass --data-root DIR or set LAYERPROBE_DATA)"
    )
    if root is not None and not root.is_dir():  # a typo here makes every real task "missing"
        where += " (not an existing folder; check --data-root or LAYERPROBE_DATA)"
    table = [("task", "group", "classes", "splits", "data")]
    for r in rows:
        table.append(
            (
                r.name,
                r.group,
                str(r.num_classes),
                _sizes_text(r.splits),
                "found" if r.found else f"missing: {r.missing}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = [f"data root: {where}"]
    for i, row in enumerate(table):
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
        )
        if verbose and i:
            lines.append(f"    {rows[i - 1].description}")
    found = sum(r.found for r in rows)
    lines.append(f"{len(rows)} tasks, {found} with data found")
    return "\n".join(line.rstrip() for line in lines)
