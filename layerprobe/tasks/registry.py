"""The task registry: every task by name, plus `folder:PATH` for an ImageFolder tree."""

from __future__ import annotations

import importlib

from layerprobe.registry import Registry
from layerprobe.tasks.base import Task

TASKS: Registry[Task] = Registry(
    "task",
    hint="Run `layerprobe tasks` to list them, or use folder:PATH for an image folder.",
)
# Modules that register tasks when imported: the real datasets and the built-in suite.
_PROVIDERS = ("layerprobe.tasks.real", "layerprobe.tasks.builtin")
_loaded = False


def register_task(task: Task) -> Task:
    """Add a task to the registry under its name; a name registered already is refused
    (:class:`~layerprobe.errors.ConfigError`)."""
    return TASKS.register(task.name, task)


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _PROVIDERS:
            importlib.import_module(module)


def list_tasks(builtin: bool | None = None) -> list[Task]:
    """All registered tasks, sorted by name; ``builtin=True``/``False`` keeps only one kind."""
    _ensure_loaded()
    tasks = sorted(TASKS.values(), key=lambda t: t.name)
    if builtin is not None:
        tasks = [t for t in tasks if t.name.startswith("builtin/") == builtin]
    return tasks


def get_task(name: str) -> Task:
    """The task called ``name``; ``folder:PATH`` builds one from an ImageFolder tree."""
    if name.startswith("folder:"):
        from layerprobe.tasks.folder import folder_task

        return folder_task(name[len("folder:") :])
    _ensure_loaded()
    return TASKS.get(name)
