"""Fine-tuning: a new head for the task's classes, the whole network trained (the transfer setting).

The VTAB-1k protocol: where the task has a ``val`` split and no learning rate is given, each
rate of the grid is trained on ``train`` and scored on ``val``; the best (ties: the smaller)
is then trained on ``train`` + ``val`` and scored on ``test``. Without a ``val`` split a
stratified fifth of ``train`` is held out for the choice instead. A given ``lr`` skips the
choice (the final run still uses ``train`` + ``val``; ``val_accuracy`` is then NaN).

The head starts at zero (as the ViT paper's fine-tuning does), inputs follow the model's own
preprocessing at its input size (images squashed, as VTAB), and there is no augmentation:
flips and shifts change the labels of structured tasks (positions, orientations).

One results row per seed, beside the probe rows of the same model key: ``probe = "finetune"``,
``layer = "pre_logits"`` at depth 1.0, ``shots = 0``, ``l2`` null, ``selected`` true.
"""

from __future__ import annotations

import copy
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from layerprobe.backbones import PRE_LOGITS, ModelConfig, as_model_config
from layerprobe.errors import DataError
from layerprobe.pretrain import data
from layerprobe.pretrain.config import FinetuneConfig
from layerprobe.pretrain.loop import Schedule, evaluate, train_epoch
from layerprobe.pretrain.optim import classifier, make_optimizer
from layerprobe.results.parts import check_results_dir, config_hash, write_part
from layerprobe.results.schema import COLUMNS, pretrain_columns
from layerprobe.tasks.base import Task
from layerprobe.tasks.fewshot import holdout_split
from layerprobe.tasks.registry import get_task

PROBE = "finetune"
HOLDOUT_FRACTION = 0.2


def finetune(
    model: ModelConfig | str,
    task: str | Task,
    config: FinetuneConfig,
    *,
    results_dir: str | Path,
    quiet: bool = False,
) -> Path:
    """Fine-tune ``model`` on ``task`` once per seed and write the rows to the results store.

    Parameters
    ----------
    model : a :class:`~layerprobe.backbones.ModelConfig` or a model spec / checkpoint path.
    task : a task name or a :class:`~layerprobe.tasks.Task` with ``train`` and ``test`` splits.
    config : how to fine-tune (:class:`FinetuneConfig`: learning-rate grid, epochs, seeds …).
    results_dir : the results store folder the part file is written to.
    quiet : no progress bars.

    Returns
    -------
    Path
        The part file: one row per seed (``probe`` ``finetune``, ``layer`` ``pre_logits``).
    """
    from layerprobe.runtime.devices import resolve_device

    device = resolve_device(config.device)
    task = get_task(task) if isinstance(task, str) else task
    for split in ("train", "test"):
        if split not in task.splits:
            raise DataError(f"task {task.name!r} has no {split} split to fine-tune and score on")
    check_results_dir(results_dir)
    bb = as_model_config(model).load()
    model_key = bb.with_resize(task.resize).model_key("auto")  # the key its probe rows carry
    job = _Job(bb.model, task, config, device, bb.preprocess, quiet)
    lr, val_accuracy = job.choose_lr()
    final = job.final_split()
    rows = []
    for seed in range(config.seeds):
        test_accuracy = job.train_and_score(lr, seed, final, job.split("test"))
        rows.append({"seed": seed, "val_accuracy": val_accuracy, "test_accuracy": test_accuracy})
        job.say(f"seed {seed}: test {100 * test_accuracy:.2f} % (lr {lr:g})")
    frame = _rows(
        bb,
        model_key,
        task,
        config,
        lr,
        rows,
        n_train=len(final[1]),
        n_test=len(job.split("test")[1]),
    )
    identity = {
        "model_key": model_key,
        "task": task.name,
        **config.identity(),
        "seeds": config.seeds,
    }
    return write_part(frame, results_dir, identity)


class _Job:
    """One model, task and config: data on hand, training runs from the same start."""

    def __init__(
        self, model: nn.Module, task: Task, config: FinetuneConfig, device, preprocess, quiet: bool
    ):
        self.start = model.cpu()
        self.task, self.config, self.device = task, config, device
        self.size = preprocess.input_size
        self.normalize = data.Normalizer(
            preprocess.mean, preprocess.std, device, channels_last=device.type == "cuda"
        )
        self.quiet = quiet
        self._splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._splits:
            self._splits[name] = data.split_arrays(
                self.task, name, self.size, data_root=self.config.data_root, quiet=self.quiet
            )
        return self._splits[name]

    def choose_lr(self) -> tuple[float, float]:
        """The learning rate and its val accuracy (NaN when the rate was given)."""
        if self.config.lr is not None:
            return self.config.lr, float("nan")
        if "val" in self.task.splits:
            tune, val = self.split("train"), self.split("val")
        else:
            images, labels = self.split("train")
            keep, held = holdout_split(labels, HOLDOUT_FRACTION, seed=0)
            tune, val = (images[keep], labels[keep]), (images[held], labels[held])
        scores = []
        for lr in sorted(self.config.lr_grid):
            scores.append(self.train_and_score(lr, 0, tune, val))
            self.say(f"lr {lr:g}: val {100 * scores[-1]:.2f} %")
        best = int(np.argmax(scores))  # the first maximum: the smaller rate on ties
        return sorted(self.config.lr_grid)[best], scores[best]

    def final_split(self) -> tuple[np.ndarray, np.ndarray]:
        """``train`` + ``val`` (VTAB-1k's train800val200), or ``train`` alone."""
        images, labels = self.split("train")
        if "val" not in self.task.splits:
            return images, labels
        val_images, val_labels = self.split("val")
        return np.concatenate([images, val_images]), np.concatenate([labels, val_labels])

    def train_and_score(self, lr: float, seed: int, train, evaluation) -> float:
        """Fine-tune a fresh copy on ``train`` and return its top-1 accuracy on ``evaluation``."""
        c = self.config
        images, labels = train
        model = new_head(copy.deepcopy(self.start), self.task.num_classes).to(self.device)
        if self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, lr=lr, wd=c.wd, head_wd=c.wd, head_lr_mult=1.0)
        batch = min(c.batch_size, len(labels))
        steps = data.steps_per_epoch(len(labels), batch, 1)
        schedule = Schedule(lr, steps * c.epochs, round(c.warmup_epochs * steps))
        everything = np.arange(len(labels), dtype=np.int64)
        for epoch in range(c.epochs):
            torch.manual_seed(data.stream_seed(seed, data.TORCH, epoch))
            batches = data.train_batches(
                images,
                labels,
                everything,
                batch_size=batch,
                epoch=epoch,
                seed=seed,
                rank=0,
                world=1,
                device=self.device,
                normalize=self.normalize,
                augment=False,
            )
            train_epoch(
                model,
                batches,
                optimizer,
                schedule=schedule,
                step0=epoch * steps,
                device=self.device,
                precision=c.precision,
            )
        eval_images, eval_labels = evaluation
        batches = data.eval_batches(
            eval_images, eval_labels, rank=0, world=1, device=self.device, normalize=self.normalize
        )
        return evaluate(model, batches, device=self.device, precision=c.precision)

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"finetune {self.task.name}: {message}", file=sys.stderr)


def new_head(model: nn.Module, num_classes: int) -> nn.Module:
    """``model`` with a zero-initialised linear head of ``num_classes`` outputs."""
    reset = getattr(model, "reset_classifier", None)
    if callable(reset):
        reset(num_classes)
        head = classifier(model)
    else:
        old = classifier(model)
        head = nn.Linear(old.in_features, num_classes)
        _replace(model, old, head)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
    return model


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for module in model.modules():
        for child_name, child in module.named_children():
            if child is old:
                setattr(module, child_name, new)
                return
    raise ValueError("classifier not found among the model's modules")


def _rows(bb, model_key, task, config, lr, runs, *, n_train, n_test) -> pd.DataFrame:
    """Results rows in the store's schema, one per seed."""
    frame = pd.DataFrame(runs)
    frame["model"] = bb.spec
    frame["model_key"] = model_key
    for key, value in pretrain_columns(bb.pretrain_info).items():
        frame[key] = value
    frame["task"] = task.name
    frame["layer"] = PRE_LOGITS
    frame["depth"] = 1.0
    frame["shots"] = 0
    frame["l2"] = None
    frame["k"] = None
    frame["n_train"] = n_train
    frame["n_test"] = n_test
    frame["probe"] = PROBE
    frame["l2_select"] = "val" if config.lr is None else f"fixed:{lr:g}"
    frame["converged"] = None
    frame["backend"] = "torch"
    frame["config"] = config_hash(config.identity())
    frame["created_at"] = pd.Timestamp(datetime.now(UTC))
    frame["selected"] = True
    return frame[[c for c in COLUMNS if c in frame.columns]]
