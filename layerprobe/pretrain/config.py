"""``PretrainConfig`` and ``FinetuneConfig``: one typed config per stage, validating itself.

Every field a user sets is checked in ``__post_init__`` so a bad value fails with a one-line
:class:`~layerprobe.errors.ConfigError` before any data is read or model built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from layerprobe.errors import ConfigError
from layerprobe.options import option, parse_int_list, whole_number
from layerprobe.runtime.devices import DEVICES

PRECISIONS = ("fp32", "bf16")  # the forward and backward pass: float32, or bfloat16 autocast
MAX_BATCH = 1 << 16
# Fields that do not change what a run computes (snapshots only add copies along the way).
NOT_IDENTITY = ("device", "snapshots")


@dataclass
class PretrainConfig:
    """How to pre-train a backbone on an upstream task.

    Attributes
    ----------
    model : a ladder name (``layerprobe pretrain --list-models``) or a timm name.
    task : the upstream task (its ``train`` split is trained on, ``val`` scored every epoch).
    data_fraction : share of the train split used, in (0, 1]; a seeded, class-stratified subset.
    epochs : passes over the (subset of the) train split.
    batch_size : images per optimizer step, over all processes together.
    lr : peak learning rate of AdamW (after the linear warm-up; cosine decay to 0 after it).
    wd : AdamW weight decay of the body's weights (never of norms, biases, position embeddings).
    head_wd : weight decay of the classifier head's weight; None = ``wd``.
    head_lr_mult : the head's learning rate is ``lr * head_lr_mult``.
    warmup_epochs : length of the linear warm-up, in epochs (fractions allowed).
    label_smoothing : cross-entropy label smoothing in [0, 1).
    image_size : input size in px; None = the rung's own (32 for ``*32``, else 224).
    seed : seeds the initialisation, the subset, the data order and the augmentation.
    device : ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    precision : ``fp32``, or ``bf16`` autocast.
    model_args : extra model constructor arguments (over the rung's own).
    snapshots : epochs (before the last) after which a snapshot checkpoint is also written,
        ``snapshots/<run>-e<N>.pt``: checkpoints along one cosine schedule, cheap points on the
        upstream-accuracy axis.
    """

    model: str = option(
        help="ladder name (see --list-models) or timm name", metavar="MODEL", show_default=""
    )
    task: str = option("builtin/upstream", help="upstream task", metavar="TASK")
    data_fraction: float = option(1.0, help="share of the train split, in (0, 1]", type=float)
    epochs: int = option(7, help="passes over the (subset of the) train split", type=whole_number())
    batch_size: int = option(128, help="images per step, over all processes", type=whole_number())
    lr: float = option(1e-3, help="AdamW peak learning rate", type=float)
    wd: float = option(0.05, help="weight decay of the body's weights", type=float)
    head_wd: float | None = option(
        None, help="weight decay of the classifier head", type=float, show_default="--wd"
    )
    head_lr_mult: float = option(1.0, help="head learning rate = lr x this", type=float)
    warmup_epochs: float = option(1.0, help="linear warm-up, in epochs", type=float)
    label_smoothing: float = option(0.0, help="cross-entropy label smoothing", type=float)
    image_size: int | None = option(
        None, help="input size in px", type=whole_number(), show_default="the rung's own"
    )
    seed: int = option(0, help="seeds init, subset, order and augmentation", type=whole_number())
    device: str = option("auto", help="where to train", choices=DEVICES)
    precision: str = option(
        "fp32", help="fp32, or bf16 = bfloat16 autocast (CUDA)", choices=PRECISIONS
    )
    model_args: Mapping[str, object] = option(
        default_factory=dict, help="model constructor arguments over the rung's own", cli=False
    )
    snapshots: tuple[int, ...] = option(
        (), help="also save checkpoints after these epochs, e.g. 1,2", type=parse_int_list
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("a model is required; see `layerprobe pretrain --list-models`")
        if not isinstance(self.task, str) or not self.task.strip():
            raise ConfigError("an upstream task is required, e.g. builtin/upstream")
        self.data_fraction = _number(self.data_fraction, "--data-fraction")
        if not 0 < self.data_fraction <= 1:
            raise ConfigError(
                f"--data-fraction must be in (0, 1], got {self.data_fraction!r}; e.g. 0.1 for 10 %"
            )
        self.epochs = _whole(self.epochs, "--epochs", 1, 1_000_000)
        self.batch_size = _whole(self.batch_size, "--batch-size", 1, MAX_BATCH)
        self.lr = _positive(self.lr, "--lr")
        self.wd = _non_negative(self.wd, "--wd")
        if self.head_wd is not None:
            self.head_wd = _non_negative(self.head_wd, "--head-wd")
        self.head_lr_mult = _non_negative(self.head_lr_mult, "--head-lr-mult")
        self.warmup_epochs = _non_negative(self.warmup_epochs, "--warmup-epochs")
        if self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"--warmup-epochs {self.warmup_epochs:g} is longer than --epochs {self.epochs}; "
                "lower it"
            )
        self.label_smoothing = _number(self.label_smoothing, "--label-smoothing")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.image_size is not None:
            self.image_size = _whole(self.image_size, "--image-size", 8, 4096)
        self.seed = _whole(self.seed, "--seed", 0, 2**63 - 1)
        self.device = _choice(self.device, DEVICES, "--device")
        self.precision = _choice(self.precision, PRECISIONS, "--precision")
        if not isinstance(self.model_args, Mapping):
            raise ConfigError(f"model_args must be a mapping, got {self.model_args!r}")
        self.model_args = dict(self.model_args)
        self.snapshots = tuple(
            sorted({_whole(e, "--snapshots", 1, self.epochs) for e in self.snapshots})
        )

    @property
    def effective_head_wd(self) -> float:
        return self.wd if self.head_wd is None else self.head_wd

    @property
    def head_lr(self) -> float:
        """The head's peak learning rate (``lr * head_lr_mult``)."""
        return self.lr * self.head_lr_mult

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """The fields that decide what the run computes (a run folder holds one identity)."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}


@dataclass
class FinetuneConfig:
    """How to fine-tune a backbone on a downstream task (a new head, the whole network trained).

    Attributes
    ----------
    epochs : passes over the train split (and over train + val in the final run).
    lr : AdamW peak learning rate; None = chosen from ``lr_grid`` on the val split (VTAB-1k:
        each candidate trained on train, scored on val; the final run on train + val).
    batch_size : images per step.
    seeds : final runs with seeds 0 … seeds-1 (one results row each).
    device, precision : as in :class:`PretrainConfig`.
    data_root : where the task's data lives (default ``$LAYERPROBE_DATA``).
    wd : AdamW weight decay (not on norms and biases).
    warmup_epochs : linear warm-up before the cosine decay, in epochs.
    lr_grid : the candidates when ``lr`` is None.
    """

    epochs: int = option(10, help="passes over the training data", type=whole_number())
    lr: float | None = option(None, help="learning rate", type=float, show_default="chosen on val")
    batch_size: int = option(64, help="images per step", type=whole_number())
    seeds: int = option(1, help="final runs, one row each", type=whole_number())
    device: str = option("auto", help="where to train", choices=DEVICES)
    precision: str = option(
        "fp32", help="fp32, or bf16 = bfloat16 autocast (CUDA)", choices=PRECISIONS
    )
    data_root: str | Path | None = option(
        None, help="task data root", metavar="DIR", show_default="$LAYERPROBE_DATA"
    )
    wd: float = option(0.0, help="AdamW weight decay (not on norms and biases)", cli=False)
    warmup_epochs: float = option(
        1.0, help="linear warm-up before the cosine decay, in epochs", cli=False
    )
    lr_grid: Sequence[float] = option(
        (1e-4, 3e-4, 1e-3), help="the candidate learning rates when lr is None", cli=False
    )

    def __post_init__(self) -> None:
        self.epochs = _whole(self.epochs, "--epochs", 1, 1_000_000)
        if self.lr is not None:
            self.lr = _positive(self.lr, "--lr")
        self.batch_size = _whole(self.batch_size, "--batch-size", 1, MAX_BATCH)
        self.seeds = _whole(self.seeds, "--seeds", 1, 1000)
        self.device = _choice(self.device, DEVICES, "--device")
        self.precision = _choice(self.precision, PRECISIONS, "--precision")
        self.wd = _non_negative(self.wd, "wd")
        self.warmup_epochs = min(_non_negative(self.warmup_epochs, "warmup_epochs"), self.epochs)
        self.lr_grid = [_positive(v, "lr_grid value") for v in self.lr_grid]
        if not self.lr_grid:
            raise ConfigError("lr_grid needs at least one learning rate")

    def identity(self) -> dict:
        """What changes the results (the ``config`` column hashes it)."""
        return {
            "probe": "finetune",
            "epochs": self.epochs,
            "lr": self.lr,
            "lr_grid": list(self.lr_grid) if self.lr is None else None,
            "batch_size": self.batch_size,
            "precision": self.precision,
            "wd": self.wd,
            "warmup_epochs": self.warmup_epochs,
        }


def _number(value, option: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{option} must be a number, got {value!r}") from err
    if isinstance(value, bool) or not math.isfinite(number):
        raise ConfigError(f"{option} must be a finite number, got {value!r}")
    return number


def _positive(value, option: str) -> float:
    number = _number(value, option)
    if number <= 0:
        raise ConfigError(f"{option} must be > 0, got {value!r}")
    return number


def _non_negative(value, option: str) -> float:
    number = _number(value, option)
    if number < 0:
        raise ConfigError(f"{option} must be >= 0, got {value!r}")
    return number


def _whole(value, option: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"{option} must be a whole number, got {value!r}") from err
    if isinstance(value, bool) or number != value or not low <= number <= high:
        raise ConfigError(f"{option} must be a whole number from {low} to {high}, got {value!r}")
    return number


def _choice(value, choices: Sequence[str], option: str) -> str:
    if value not in choices:
        raise ConfigError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value
