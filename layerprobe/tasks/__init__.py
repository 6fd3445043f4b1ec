"""tasks: the task registry, loaders for each split, and few-shot index sampling."""

from layerprobe.tasks.base import (
    GROUPS,
    ArraySplit,
    FileSplit,
    SplitData,
    Task,
    open_image,
    resolve_data_root,
)
from layerprobe.tasks.fewshot import fewshot_indices, holdout_split
from layerprobe.tasks.registry import get_task, list_tasks, register_task

__all__ = [
    "GROUPS",
    "ArraySplit",
    "FileSplit",
    "SplitData",
    "Task",
    "fewshot_indices",
    "get_task",
    "holdout_split",
    "list_tasks",
    "open_image",
    "register_task",
    "resolve_data_root",
]
