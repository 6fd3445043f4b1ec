"""AdamW with the paper's head knobs, and the learning-rate schedule.

Parameter groups (each carries ``name`` and ``lr_mult``; the schedule sets
``lr = peak * lr_mult * factor(step)`` on every step):

- ``body``: weights of the body, decayed with ``wd``;
- ``body_no_wd``: norms, biases, and what the model lists in ``no_weight_decay()``
  (position embeddings, class token): never decayed, as usual for ViTs;
- ``head``: the classifier's weight, decayed with ``head_wd``, learning rate ``lr * head_lr_mult``;
- ``head_no_wd``: the classifier's bias, learning rate ``lr * head_lr_mult``, no decay.

Weight decay is torch's AdamW (decoupled from the gradient, scaled by the group's current
learning rate), so raising ``head_lr_mult`` also raises the head's per-step decay.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def classifier(model: nn.Module) -> nn.Module:
    """The classifier head: timm's ``get_classifier()``, else the last ``nn.Linear``."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no classifier head (no nn.Linear)")
    return linears[-1]


def param_groups(model: nn.Module, *, wd: float, head_wd: float, head_lr_mult: float) -> list[dict]:
    """The four groups of the module docstring (empty groups left out)."""
    head_ids = {id(p) for p in classifier(model).parameters()}
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    groups = {
        "body": dict(weight_decay=wd, lr_mult=1.0),
        "body_no_wd": dict(weight_decay=0.0, lr_mult=1.0),
        "head": dict(weight_decay=head_wd, lr_mult=head_lr_mult),
        "head_no_wd": dict(weight_decay=0.0, lr_mult=head_lr_mult),
    }
    members: dict[str, list] = {name: [] for name in groups}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = p.ndim <= 1 or name.endswith(".bias") or name in skip
        part = "head" if id(p) in head_ids else "body"
        members[part + ("_no_wd" if no_wd else "")].append(p)
    return [
        {"name": name, "params": members[name], **groups[name]} for name in groups if members[name]
    ]


def make_optimizer(
    model: nn.Module, *, lr: float, wd: float, head_wd: float, head_lr_mult: float
) -> torch.optim.AdamW:
    groups = param_groups(model, wd=wd, head_wd=head_wd, head_lr_mult=head_lr_mult)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``.

    The first step already has a non-zero rate (``1 / warmup``): a zero step would be wasted.
    """
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


def set_lr(optimizer: torch.optim.Optimizer, peak: float, factor: float) -> float:
    """Set every group's rate to ``peak * lr_mult * factor``; returns the body's rate."""
    for g in optimizer.param_groups:
        g["lr"] = peak * g.get("lr_mult", 1.0) * factor
    return peak * factor
