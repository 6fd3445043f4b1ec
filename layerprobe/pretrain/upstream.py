"""Upstream (US) accuracy of any model: top-1 of its own classifier head on a task's split.

The images go through the model's own preprocessing (as ``layerprobe extract`` feeds it), in
batches of :data:`~layerprobe.pretrain.data.EVAL_BATCH` like the pre-training loop's own
evaluation, so a layerprobe checkpoint scores what its run recorded.

With a ``cache_dir`` the figure is recorded for the model key as
``<cache_dir>/<model_key>/upstream.json`` (``upstream_task``, ``upstream_accuracy``, ``split``,
``weights_sha256`` …); probes of that model key, or of any key of the same weights, carry it
where the checkpoint recorded none (:func:`layerprobe.extract.cache.read_upstream`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from layerprobe import __version__
from layerprobe.backbones import Backbone, ModelConfig, as_model_config
from layerprobe.errors import ConfigError, DataError, check_writable
from layerprobe.extract.cache import UPSTREAM_FILE, check_upstream_record
from layerprobe.pretrain.data import EVAL_BATCH
from layerprobe.runtime.atomic import write_json_atomic
from layerprobe.tasks.base import Task
from layerprobe.tasks.registry import get_task


@dataclass(frozen=True)
class UpstreamScore:
    """What :func:`upstream_score` measured.

    Attributes
    ----------
    accuracy : top-1 accuracy in [0, 1].
    task, split : what it was measured on.
    n : how many images.
    record : the ``upstream.json`` written; None without a cache folder.
    """

    accuracy: float
    task: str
    split: str
    n: int
    record: Path | None


def upstream_accuracy(
    model: ModelConfig | str, task: str | Task, split: str = "val", **options
) -> float:
    """Top-1 accuracy in [0, 1]: :func:`upstream_score`'s ``accuracy``.

    Parameters
    ----------
    model, task, split
        As for :func:`upstream_score`.
    **options
        ``cache_dir``, ``batch_size``, ``device``, ``data_root``, as for :func:`upstream_score`.

    Returns
    -------
    float
        The fraction of the split's images whose arg-max logit is their label.
    """
    return upstream_score(model, task, split, **options).accuracy


def upstream_score(
    model: ModelConfig | str,
    task: str | Task,
    split: str = "val",
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = EVAL_BATCH,
    device: str = "auto",
    data_root=None,
) -> UpstreamScore:
    """Top-1 accuracy of ``model``'s own classifier on ``task``'s ``split``, in [0, 1].

    The model's head must have one output per class of the task (a timm ImageNet model on
    ImageNet, a pre-training checkpoint on its upstream task); otherwise :class:`ConfigError`.
    With ``cache_dir`` the result is also written to ``<cache_dir>/<model_key>/upstream.json``.

    Parameters
    ----------
    model : a :class:`~layerprobe.backbones.ModelConfig` or a model spec / checkpoint path.
    task : a task name or a :class:`~layerprobe.tasks.Task`.
    split : the split to score.
    cache_dir : the feature cache folder to record the result in; None: record nothing.
    batch_size : images per forward pass.
    device : ``auto``, ``cpu``, ``cuda`` …
    data_root : the folder of real datasets (default ``$LAYERPROBE_DATA``).

    Returns
    -------
    UpstreamScore
        The accuracy (the fraction of the split's images whose arg-max logit is their label),
        the task, split and image count, and the record written.
    """
    from layerprobe.extract.data import batches
    from layerprobe.runtime.devices import resolve_device

    if cache_dir is not None:
        check_writable(cache_dir, "--cache", create=False)  # before the work, made after it
    dev = resolve_device(device)
    task = get_task(task) if isinstance(task, str) else task
    if split not in task.splits:
        raise DataError(
            f"task {task.name!r} has no split {split!r}; it has {', '.join(task.splits)}"
        )
    bb = as_model_config(model).load()
    check_head(bb, task)
    data = task.load(split, data_root)
    if len(data) == 0:
        raise DataError(f"task {task.name!r} split {split!r} has no images; check the data")
    size = bb.preprocess.input_size
    loader = batches(
        data,
        0,
        len(data),
        transform=bb.preprocess.transform(),
        image_size=size,
        batch_size=batch_size,
        workers=0,
        pin_memory=dev.type == "cuda",
    )
    model_ = bb.model.to(dev).eval()
    correct = 0
    with torch.no_grad():
        for x, index, errors in loader:
            bad = next((e for e in errors if e), None)
            if bad:
                raise DataError(bad)
            y = torch.as_tensor(data.labels[index.numpy()], device=dev)
            correct += int((model_(x.to(dev)).argmax(dim=1) == y).sum())
    accuracy = correct / len(data)
    record = None
    if cache_dir is not None:
        record = record_upstream(
            cache_dir, bb, task=task.name, split=split, accuracy=accuracy, n=len(data)
        )
    return UpstreamScore(accuracy, task.name, split, len(data), record)


def check_head(bb: Backbone, task: Task) -> None:
    """The model's classifier must have one output per class of ``task``."""
    path = bb.family.classifier
    head = dict(bb.model.named_modules()).get(path) if path else None
    outputs = getattr(head, "out_features", None)
    if outputs is None:
        raise ConfigError(
            f"model {bb.spec} has no classifier head to score; upstream accuracy needs the "
            "model's own head on its own upstream task"
        )
    if outputs != task.num_classes:
        raise ConfigError(
            f"model {bb.spec}'s classifier has {outputs} outputs but task {task.name!r} has "
            f"{task.num_classes} classes; score the model on its own upstream task (e.g. a timm "
            "ImageNet model on imagenet)"
        )


def record_upstream(
    cache_dir, bb: Backbone, *, task: str, split: str, accuracy: float, n: int
) -> Path:
    """Write ``<cache_dir>/<model_key>/upstream.json`` atomically; returns its path."""
    path = Path(cache_dir) / bb.model_key("auto") / UPSTREAM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "upstream_task": task,
        "upstream_accuracy": accuracy,
        "split": split,
        "n": n,
        "model": bb.spec,
        "weights_sha256": bb.weights_sha256,
        "layerprobe_version": __version__,
    }
    check_upstream_record(record, path)  # what readers accept, checked before it is written
    return write_json_atomic(path, record, indent=2, mkdir=False)
