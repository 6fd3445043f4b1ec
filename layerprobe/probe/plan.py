"""Which rows each probe of a task trains on, and which rows choose λ.

- Validation: the task's ``val`` split when the cache has one; otherwise a fixed, class-
  stratified hold-out of the train split (:func:`layerprobe.tasks.holdout_split`, seed 0)
  taken out *before* shots are drawn, so it never overlaps any shot set. Every seed and
  shot count of a task is scored on the same validation rows.
- Shots: :func:`layerprobe.tasks.fewshot_indices` on the remaining train rows, nested
  (the 1-shot set is inside the 5-shot set) and fixed by the seed. ``shots = 0`` is the
  whole remaining train split; it does not depend on the seed, so it is probed once (seed 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from layerprobe.errors import ConfigError, DataError, check_memory
from layerprobe.tasks import fewshot_indices, holdout_split

VAL_FRACTION = 0.2  # of each class's train rows, when the task has no `val` split …
VAL_MAX_PER_CLASS = 20  # … at most this many per class (VTAB-1k keeps 200 for validation)
HOLDOUT_SEED = 0


@dataclass
class ProbePlan:
    """Row indices of one task's probes.

    Attributes
    ----------
    keys : (shots, seed) of each probe.
    subsets : per probe, indices into the train split.
    val : indices into the train split held out for validation, or None (a ``val`` split).
    """

    keys: list[tuple[int, int]]
    subsets: list[np.ndarray]
    val: np.ndarray | None


def _whole(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_counts(shots: Sequence[int], seeds: int) -> tuple[list[int], int]:
    """Shot counts (whole numbers >= 0, at least one) and the seed count (a whole number
    >= 1), checked before any probe runs; returns them sorted and deduplicated.

    Raises
    ------
    ConfigError : a negative, fractional or missing shot count, or fewer than one seed.
    """
    listed = list(shots) if isinstance(shots, Sequence) and not isinstance(shots, str) else None
    if not listed or not all(_whole(k) and k >= 0 for k in listed):
        raise ConfigError(
            f"--shots must be whole counts >= 0 (0 = the whole train split), got {shots!r}"
        )
    if not _whole(seeds) or seeds < 1:
        raise ConfigError(f"--seeds must be a whole number >= 1, got {seeds!r}")
    return sorted(set(int(k) for k in listed)), int(seeds)


PROBE_BYTES = 180  # a probe's bookkeeping: its (shots, seed) key and its index array's header
ROW_BYTES = 200  # one result row (a layer, shot count, seed and λ) before its part is written


def plan_bytes(shots: Sequence[int], seeds: int, *, classes: int = 2, grid: int = 1) -> int:
    """A lower bound of the memory (bytes) one task's probes need: the index arrays of every
    (shots, seed), and one result row per probe and grid value (of one layer)."""
    drawn = [int(k) for k in set(shots) if int(k) > 0]
    probes = seeds * len(drawn) + (0 in set(shots))
    return seeds * sum(k * classes * 8 for k in drawn) + probes * (PROBE_BYTES + ROW_BYTES * grid)


def check_plan_options(
    shots: Sequence[int], seeds: int, *, classes: int = 2, grid: int = 1
) -> tuple[list[int], int]:
    """Refuse bad counts (:func:`check_counts`) and plans that cannot fit in memory
    (:func:`plan_bytes` against the memory available), before any work is done; returns the
    shot counts sorted and deduplicated, and the seed count."""
    shots, seeds = check_counts(shots, seeds)
    check_memory(
        plan_bytes(shots, seeds, classes=classes, grid=grid),
        f"--seeds {seeds} with --shots {','.join(map(str, shots))}",
        "give fewer --seeds (a few suffice for a mean and a standard deviation)",
    )
    return shots, seeds


def plan_probes(
    train_labels: np.ndarray,
    shots: Sequence[int],
    seeds: int,
    *,
    has_val_split: bool,
    task: str = "",
) -> ProbePlan:
    """The probes of a task for every shot count and seed 0 … seeds-1."""
    labels = np.asarray(train_labels)
    shots, seeds = check_plan_options(shots, seeds, classes=max(2, len(np.unique(labels))))
    if len(np.unique(labels)) < 2:
        raise DataError(
            f"task {task} has a single class in its train split; a probe needs at least two"
        )
    val = None
    pool = np.arange(len(labels))
    if not has_val_split:
        pool, val = holdout_split(
            labels, VAL_FRACTION, HOLDOUT_SEED, max_per_class=VAL_MAX_PER_CLASS
        )
        if len(val) == 0:
            raise DataError(
                f"task {task} has no `val` split and too few train rows to hold some out for "
                "choosing λ; extract a `val` split or add train examples"
            )
    keys, subsets = [], []
    for seed in range(seeds):
        try:
            drawn = fewshot_indices(labels[pool], [k for k in shots if k > 0], seed)
        except DataError as err:
            held = "" if val is None else f" (after holding out {len(val)} rows for validation)"
            raise DataError(f"task {task}: {err}{held}") from err
        for k in shots:
            if k == 0 and seed > 0:
                continue  # the full train split is the same for every seed
            keys.append((k, seed))
            subsets.append(pool if k == 0 else pool[drawn[k]])
    return ProbePlan(keys, subsets, val)
