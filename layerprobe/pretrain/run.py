"""``pretrain(config, out_dir)``: train a backbone on an upstream task, resumably.

Every epoch starts from the state saved after the previous one and draws its randomness
from seeds of its own (data order, augmentation, torch's global RNG for dropout), so a run
killed at any moment and started again ends with the same weights as one never interrupted
(on the CPU, bit for bit). Under ``torchrun`` the ranks split every batch (DDP) and rank 0
alone writes the run folder (:mod:`layerprobe.pretrain.folder`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from layerprobe import __version__
from layerprobe.backbones.checkpoint import save_checkpoint
from layerprobe.backbones.preprocess import Preprocess
from layerprobe.errors import ConfigError, DataError, check_folder
from layerprobe.pretrain import data, distributed
from layerprobe.pretrain.config import PretrainConfig
from layerprobe.pretrain.folder import RunFolder
from layerprobe.pretrain.ladder import Arch, build, count_params, resolve_model
from layerprobe.pretrain.loop import Diverged, Schedule, evaluate, train_epoch
from layerprobe.pretrain.optim import make_optimizer
from layerprobe.progress import duration, say
from layerprobe.tasks.base import Task
from layerprobe.tasks.registry import get_task

# Inputs scaled to [-1, 1], as big_vision's pre-training does.
MEAN = STD = (0.5, 0.5, 0.5)


def pretrain(
    config: PretrainConfig,
    out_dir: str | Path,
    *,
    force: bool = False,
    quiet: bool = False,
    data_root=None,
) -> Path:
    """Pre-train ``config.model`` on ``config.task`` into the run folder ``out_dir``.

    Resumes from the last completed epoch when the folder holds the same config; returns at
    once when that run is complete. A folder holding another config is refused unless
    ``force`` (which starts over there).

    Returns
    -------
    Path : ``out_dir / "checkpoint.pt"``, a layerprobe checkpoint (``load(path)`` rebuilds it)
        whose ``pretrain_info`` holds the knobs and the upstream accuracy.
    """
    from layerprobe.runtime.devices import resolve_device

    out_dir = check_folder(out_dir, "--out")
    device = resolve_device(config.device)
    task = get_task(config.task)
    for split in ("train",):
        if split not in task.splits:
            raise DataError(f"task {task.name!r} has no train split to pre-train on")
    eval_split = "val" if "val" in task.splits else "test"
    arch = resolve_model(
        config.model,
        task.num_classes,
        image_size=config.image_size,
        model_args=config.model_args,
    )
    identity = _json(
        {"config": config.identity(), "task_fingerprint": task.fingerprint(), "arch": vars(arch)}
    )
    ranks = distributed.start(device.type)
    try:
        if device.type == "cuda" and ranks.world > 1:
            device = torch.device("cuda", ranks.local_rank)
        if config.batch_size % ranks.world:
            raise ConfigError(
                f"--batch-size {config.batch_size} does not split evenly over {ranks.world} "
                "processes; give a multiple of the process count"
            )
        # Rank 0 holds the folder's lock while it writes: a second pretrain there is refused.
        with RunFolder(out_dir).claim(ranks.is_main) as folder:
            status = folder.check(identity, force)
            if status == "complete":
                if ranks.is_main:
                    say(f"pre-training {out_dir} is complete; reusing its checkpoint", quiet=quiet)
                return folder.checkpoint
            if ranks.is_main:
                details = {
                    "eval_split": eval_split,
                    "layerprobe_version": __version__,
                    "device": config.device,
                }
                folder.start(identity, details)
            ranks.barrier()
            trainer = _Trainer(
                config, task, arch, eval_split, folder, device, ranks, data_root, quiet
            )
            return trainer.run(identity)
    finally:
        distributed.stop(ranks)


@dataclass
class _Data:
    images: np.ndarray
    labels: np.ndarray
    subset: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray


class _Trainer:
    def __init__(self, config, task, arch, eval_split, folder, device, ranks, data_root, quiet):
        self.config: PretrainConfig = config
        self.task: Task = task
        self.arch: Arch = arch
        self.eval_split = eval_split
        self.folder: RunFolder = folder
        self.device: torch.device = device
        self.ranks = ranks
        self.data_root = data_root
        self.quiet = quiet or not ranks.is_main
        self.clock, self.epochs_run = time.monotonic(), 0  # this run's pace, for the time left

    # ------------------------------------------------------------------ set-up
    def load_data(self) -> _Data:
        """Rank 0 decodes (and caches) the splits first; the others then read the cache."""
        size = self.arch.image_size
        arrays = {}
        for turn in (True, False):
            if self.ranks.is_main == turn:
                for split in ("train", self.eval_split):
                    arrays[split] = data.split_arrays(
                        self.task, split, size, data_root=self.data_root, quiet=self.quiet
                    )
            self.ranks.barrier()
        images, labels = arrays["train"]
        c = self.config
        subset = data.balanced_subset(
            labels,
            c.data_fraction,
            seed=c.seed,
            class_names=self.task.classes,
            num_classes=self.task.num_classes,
        )
        if data.steps_per_epoch(len(subset), c.batch_size, self.ranks.world) == 0:
            raise ConfigError(
                f"--data-fraction {c.data_fraction:g} leaves {len(subset)} training images, fewer "
                f"than one batch of {c.batch_size}; raise --data-fraction or lower --batch-size"
            )
        return _Data(images, labels, subset, *arrays[self.eval_split])

    def build_model(self):
        model, self.arch = build(self.arch, self.config.seed)
        model.to(self.device)
        if self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        c = self.config
        optimizer = make_optimizer(
            model, lr=c.lr, wd=c.wd, head_wd=c.effective_head_wd, head_lr_mult=c.head_lr_mult
        )
        return model, optimizer

    # ------------------------------------------------------------------ training
    def run(self, identity: dict) -> Path:
        c, ranks = self.config, self.ranks
        d = self.load_data()
        model, optimizer = self.build_model()
        steps = data.steps_per_epoch(len(d.subset), c.batch_size, ranks.world)
        schedule = Schedule(c.lr, steps * c.epochs, round(c.warmup_epochs * steps))
        state = self.folder.load_state(identity)
        metrics: list[dict] = []
        first_epoch = 0
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            metrics, first_epoch = list(state["metrics"]), int(state["epoch"])
        net = DistributedDataParallel(model) if ranks.world > 1 else model
        if first_epoch and ranks.is_main:
            say(
                f"pre-training {self.folder.path}: resuming after epoch {first_epoch} of "
                f"{c.epochs}",
                quiet=self.quiet,
            )
        self.clock = time.monotonic()
        normalize = data.Normalizer(MEAN, STD, self.device, self.device.type == "cuda")
        for epoch in range(first_epoch, c.epochs):
            torch.manual_seed(data.stream_seed(c.seed, data.TORCH, epoch, ranks.rank))
            batches = data.train_batches(
                d.images,
                d.labels,
                d.subset,
                batch_size=c.batch_size,
                epoch=epoch,
                seed=c.seed,
                rank=ranks.rank,
                world=ranks.world,
                device=self.device,
                normalize=normalize,
            )
            try:
                stats = train_epoch(
                    net,
                    self._progress(batches, steps, epoch),
                    optimizer,
                    schedule=schedule,
                    step0=epoch * steps,
                    device=self.device,
                    precision=c.precision,
                    label_smoothing=c.label_smoothing,
                    ranks=ranks,
                )
            except Diverged as err:
                raise Diverged(
                    f"{err} (epoch {epoch + 1}); training stopped and {self.folder.path} keeps the "
                    f"state after epoch {epoch}: lower --lr or raise --warmup-epochs, then run again "
                    "with --force",
                    err.step,
                ) from None
            accuracy = evaluate(
                model,
                data.eval_batches(
                    d.val_images,
                    d.val_labels,
                    rank=ranks.rank,
                    world=ranks.world,
                    device=self.device,
                    normalize=normalize,
                ),
                device=self.device,
                precision=c.precision,
                ranks=ranks,
            )
            metrics.append(_metrics_row(epoch, (epoch + 1) * steps, stats, accuracy))
            if ranks.is_main:
                self.folder.save_state(
                    {
                        "identity": identity,
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "metrics": metrics,
                    }
                )
                self.folder.write_metrics(metrics)
                self._report(metrics[-1])
                if epoch + 1 in c.snapshots and epoch + 1 < c.epochs:
                    self.write_checkpoint(
                        model,
                        metrics,
                        len(d.subset),
                        (epoch + 1) * steps,
                        self.folder.snapshot(epoch + 1),
                    )
            ranks.barrier()
        if ranks.is_main:
            self.write_checkpoint(model, metrics, len(d.subset), steps * c.epochs)
            self.folder.finish()
        ranks.barrier()
        return self.folder.checkpoint

    def write_checkpoint(
        self, model, metrics: list[dict], train_images: int, steps: int, path: Path | None = None
    ) -> None:
        """The run's checkpoint, or with ``path`` a snapshot after ``len(metrics)`` epochs."""
        c, size = self.config, self.arch.image_size
        preprocess = Preprocess(
            input_size=size,
            resize_size=size,
            interpolation=data.INTERPOLATION,
            mean=MEAN,
            std=STD,
            crop_pct=1.0,
            resize="squash",
        )
        info = {
            "upstream_task": self.task.name,
            "upstream_accuracy": metrics[-1]["upstream_accuracy"],
            "upstream_split": self.eval_split,
            "params": count_params(model),
            "data_fraction": c.data_fraction,
            "epochs": len(metrics),
            "schedule_epochs": c.epochs,
            "head_wd": c.effective_head_wd,
            "head_lr": c.head_lr,
            "lr": c.lr,
            "wd": c.wd,
            "head_lr_mult": c.head_lr_mult,
            "warmup_epochs": c.warmup_epochs,
            "label_smoothing": c.label_smoothing,
            "batch_size": c.batch_size,
            "image_size": size,
            "seed": c.seed,
            "model": c.model,
            "train_images": train_images,
            "steps": steps,
            "upstream_accuracy_per_epoch": [round(m["upstream_accuracy"], 6) for m in metrics],
            "config": _json(c.to_dict()),
            "layerprobe_version": __version__,
        }
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint(
            path or self.folder.checkpoint,
            self.arch.spec,
            state,
            model_kwargs=_json(self.arch.kwargs),
            preprocess=preprocess,
            pretrain_info=info,
        )

    # ------------------------------------------------------------------ output
    def _progress(self, batches, steps: int, epoch: int):
        """The epoch's batches, counted: a tqdm bar on a terminal (step, img/s, ETA), elsewhere
        a line every ``progress.INTERVAL`` seconds within a long epoch."""
        from layerprobe.progress import Progress

        desc = f"pre-training {self.folder.path.name} epoch {epoch + 1}/{self.config.epochs}"
        per_rank = self.config.batch_size  # images per step, all ranks together
        with Progress(
            steps, desc=desc, unit="step", quiet=self.quiet, rate=(per_rank, "img/s"), leave=False
        ) as bar:
            for batch in batches:
                yield batch
                bar.update()

    def _report(self, row: dict) -> None:
        """One line per epoch (on a terminal or not): loss, accuracies, img/s, time left."""
        if self.quiet:
            return
        self.epochs_run += 1
        left = self.config.epochs - row["epoch"]
        per_epoch = (time.monotonic() - self.clock) / self.epochs_run
        say(
            f"pre-training {self.folder.path.name} epoch {row['epoch']}/{self.config.epochs} "
            f"(step {row['step']})  loss {row['train_loss']:.4f}  "
            f"train {100 * row['train_accuracy']:.1f} %  {self.eval_split} "
            f"{100 * row['upstream_accuracy']:.2f} %  {row['images_per_s']:.0f} img/s  "
            f"ETA {duration(left * per_epoch)}"
        )


def _metrics_row(epoch: int, step: int, stats, accuracy: float) -> dict:
    return {
        "epoch": epoch + 1,
        "step": step,
        "lr": stats.last_lr,
        "train_loss": stats.loss,
        "train_accuracy": stats.accuracy,
        "upstream_accuracy": accuracy,
        "images": stats.images,
        "seconds": round(stats.seconds, 3),
        "images_per_s": stats.images / max(stats.seconds, 1e-9),
    }


def _json(value):
    """``value`` as JSON gives it back (tuples become lists): stored and fresh values compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))
