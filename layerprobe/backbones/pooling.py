"""Pooling one layer's output to one vector per image.

Token maps (B, L, D) carry ``prefix`` tokens first (class token, then register tokens, the
way timm orders them). ``cls`` takes the class token, ``mean`` averages the patch tokens
only (prefix excluded), ``cls+mean`` concatenates both. Conv maps (B, C, H, W) are averaged
over space (``gap``). Outputs that are already vectors (B, D) pass through unchanged.
``auto`` is whatever the model's own head does at ``pre_logits``.
"""

from __future__ import annotations

import torch

from layerprobe.errors import ConfigError

POOLS = ("auto", "cls", "mean", "cls+mean", "gap")


def check_pool(pool: str) -> str:
    """Validate a user's pooling name."""
    if pool not in POOLS:
        raise ConfigError(f"unknown pooling {pool!r}; choose one of {', '.join(POOLS)}")
    return pool


def resolve(pool: str, kind: str, *, class_token: bool, auto_tokens: str) -> str:
    """The pooling method one layer uses under the pooling option ``pool``.

    Parameters
    ----------
    pool : one of POOLS.
    kind : "tokens", "conv" or "vector" (the layer's raw output).
    class_token : whether this layer's token map starts with a class token.
    auto_tokens : the model head's token pooling ("cls", "mean", "max", "avgmax", "cls_dist").
    """
    check_pool(pool)
    if kind == "vector":
        return "identity"
    # A layer before the class token is added (a ViT's patch_embed) has none: there, class-token
    # pooling falls back to the mean of its patch tokens / positions. (Whether the model has a
    # class token at all is checked once per model, before any layer is resolved.)
    if kind == "conv":
        return "gap"
    if pool == "auto":
        uses_class_token = auto_tokens in ("cls", "cls_dist")
        return auto_tokens if (class_token or not uses_class_token) else "mean"
    if pool == "gap":
        return "mean"
    if pool in ("cls", "cls+mean") and not class_token:
        return "mean"
    return pool


def apply(
    method: str, x: torch.Tensor, *, prefix_tokens: int = 0, layout: str = "NCHW"
) -> torch.Tensor:
    """Pool ``x`` with ``method``.

    ``method`` is what :func:`resolve` gives: "cls", "mean", "cls+mean", "gap", "identity", or
    "max" / "avgmax" (only a timm head's own ``global_pool`` under ``auto``) / "cls_dist" (a
    DeiT-distilled head: class + distillation token).

    Parameters
    ----------
    x : (B, L, D) tokens, (B, C, H, W) or (B, H, W, C) conv map, or (B, D) vector.
    prefix_tokens : number of leading non-patch tokens (class + registers) in a token map.
    layout : "NCHW" or "NHWC" for conv maps.

    Returns
    -------
    (B, D') tensor.
    """
    if method == "identity":
        return x
    if method == "gap":
        return x.mean(dim=(1, 2)) if layout == "NHWC" else x.mean(dim=(2, 3))
    patches = x[:, prefix_tokens:]
    if method == "cls":
        return x[:, 0]
    if method == "mean":
        return patches.mean(dim=1)
    if method == "cls+mean":
        return torch.cat([x[:, 0], patches.mean(dim=1)], dim=1)
    if method == "max":
        return patches.amax(dim=1)
    if method == "avgmax":  # timm's 'avgmax': the average of the mean and the max
        return 0.5 * (patches.amax(dim=1) + patches.mean(dim=1))
    if method == "cls_dist":  # DeiT distilled: the average of the class and distillation tokens
        return 0.5 * (x[:, 0] + x[:, 1])
    raise ValueError(f"unknown pooling method {method!r}")


def width(method: str, shape: tuple[int, ...], layout: str = "NCHW") -> int:
    """The pooled width D' of a layer whose raw output for one image has ``shape`` (no batch dim)."""
    if method == "identity":
        return shape[0]
    if method == "gap":
        return shape[-1] if layout == "NHWC" else shape[0]
    if method == "cls+mean":
        return 2 * shape[-1]
    return shape[-1]
