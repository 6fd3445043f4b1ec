"""Which regularisation value a probe reports: the λ policy.

- ``val`` (default): the λ with the best validation accuracy, ties to the larger λ (the
  simpler model); validation rows never overlap the shots or the test split.
- ``fixed:VALUE``: one λ for every probe, as big_vision's few-shot evaluator does
  (``fixed:1024`` = 2^10 reproduces its published numbers). VALUE must be in the λ grid; the
  grid defaults to just that value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerprobe.errors import ConfigError
from layerprobe.probe.problems import select_l2

VAL = "val"
FIXED = "fixed:"
BIG_VISION_L2 = 2.0**10


def parse_policy(text: str) -> str:
    """The canonical spelling of a policy (``fixed:2**10`` -> ``fixed:1024``)."""
    text = str(text).strip()
    if text == VAL:
        return VAL
    if text.startswith(FIXED):
        value = _number(text[len(FIXED) :])
        return f"{FIXED}{value:g}"
    raise ConfigError(
        f"unknown --l2-select {text!r}; use 'val' (best on validation) or 'fixed:VALUE' "
        "(e.g. fixed:1024, big_vision's protocol)"
    )


def fixed_value(policy: str) -> float | None:
    """The λ of a ``fixed:`` policy, None for ``val``."""
    policy = parse_policy(policy)
    return None if policy == VAL else _number(policy[len(FIXED) :])


def policy_grid(policy: str, l2s: Sequence[float] | None, default: Sequence[float]) -> list[float]:
    """The λ grid to probe: ``l2s`` when given (it must hold a fixed policy's λ), else the
    default grid for ``val`` and the one fixed value for ``fixed:``."""
    value = fixed_value(policy)
    if l2s is None:
        return list(default) if value is None else [value]
    if value is not None and not np.any(np.isclose(np.asarray(l2s, float), value, rtol=1e-12)):
        raise ConfigError(
            f"--l2-select {policy} needs λ={value:g} in the --l2 grid; add it or drop --l2"
        )
    return list(l2s)


def select(policy: str, val_accuracy: np.ndarray, l2s: np.ndarray) -> np.ndarray:
    """Index into ``l2s`` (ascending) of the reported λ, over the last axis of ``val_accuracy``."""
    value = fixed_value(policy)
    if value is None:
        return select_l2(val_accuracy)
    index = int(np.argmin(np.abs(np.log(l2s) - np.log(value))))
    return np.full(val_accuracy.shape[:-1], index, dtype=np.int64)


def _number(text: str) -> float:
    raw = text.strip().replace("^", "**")
    try:
        if "**" in raw:
            base, exp = raw.split("**", 1)
            value = float(base) ** float(exp)
        else:
            value = float(raw)
    except (ValueError, OverflowError, TypeError) as err:
        raise ConfigError(
            f"--l2-select fixed:VALUE needs a number, got {text!r} (e.g. fixed:1024 or fixed:2**10)"
        ) from err
    if isinstance(value, complex) or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"--l2-select fixed:VALUE needs a positive number, got {text!r}")
    return float(value)
