"""One training epoch and one evaluation pass; shared by pre-training and fine-tuning.

Loss and accuracy are accumulated on the device and read once per epoch; the loss is checked
for NaN / inf every :data:`CHECK_EVERY` steps (and at the epoch's end), so the host waits on
the device rarely. A non-finite loss stops the run with :class:`Diverged`, which names the
first bad step; the caller keeps the last good state on disk.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from layerprobe.errors import UserError
from layerprobe.pretrain.distributed import Ranks
from layerprobe.pretrain.optim import lr_factor, set_lr

CHECK_EVERY = 16
NO_BAD_STEP = 1 << 62


class Diverged(UserError):
    """The training loss became NaN or infinite."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclass
class Schedule:
    """Where the learning rate stands: peak rate, total and warm-up steps."""

    peak_lr: float
    total_steps: int
    warmup_steps: int


@dataclass
class EpochStats:
    """What one training epoch did (summed over ranks)."""

    loss: float
    accuracy: float
    images: int
    steps: int
    seconds: float
    last_lr: float


def autocast(device: torch.device, precision: str):
    """bf16 autocast for ``precision == "bf16"``, else nothing."""
    if precision != "bf16":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    schedule: Schedule,
    step0: int,
    device: torch.device,
    precision: str = "fp32",
    label_smoothing: float = 0.0,
    ranks: Ranks | None = None,
) -> EpochStats:
    """Train over ``batches`` once; ``step0`` is the global step the epoch starts at."""
    ranks = ranks or Ranks()
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, step, lr = 0, step0, 0.0
    window: list[torch.Tensor] = []
    for x, y in batches:
        lr = set_lr(
            optimizer,
            schedule.peak_lr,
            lr_factor(step, schedule.total_steps, schedule.warmup_steps),
        )
        with autocast(device, precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss = loss.detach()
        window.append(loss)
        loss_sum += loss
        correct += (logits.detach().argmax(dim=1) == y).sum()
        seen += len(y)
        step += 1
        if len(window) == CHECK_EVERY:
            _check_finite(window, step - len(window), ranks, device)
            window = []
    _check_finite(window, step - len(window), ranks, device)
    steps = step - step0
    totals = ranks.sum([loss_sum.item(), float(correct.item()), float(seen)], device)
    loss_total, correct_total, seen_total = totals.tolist()
    return EpochStats(
        loss=loss_total / max(steps * ranks.world, 1),
        accuracy=correct_total / max(seen_total, 1),
        images=int(seen_total),
        steps=steps,
        seconds=time.perf_counter() - start,
        last_lr=lr,
    )


def _check_finite(window: list[torch.Tensor], first_step: int, ranks: Ranks, device) -> None:
    """Raise :class:`Diverged` at the first non-finite loss of the window (on any rank)."""
    bad_step = NO_BAD_STEP
    if window:
        bad = ~torch.isfinite(torch.stack(window))
        if bool(bad.any()):
            bad_step = first_step + int(bad.nonzero()[0, 0])
    bad_step = ranks.min(bad_step, device)
    if bad_step != NO_BAD_STEP:
        raise Diverged(f"the training loss became NaN or infinite at step {bad_step + 1}", bad_step)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    precision: str = "fp32",
    ranks: Ranks | None = None,
) -> float:
    """Top-1 accuracy of ``model``'s own head over ``batches`` (summed over ranks)."""
    ranks = ranks or Ranks()
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for x, y in batches:
        with autocast(device, precision):
            logits = model(x)
        correct += (logits.argmax(dim=1) == y).sum()
        seen += len(y)
    model.train(was_training)
    hits, total = ranks.sum([float(correct.item()), float(seen)], device).tolist()
    return hits / max(total, 1)
