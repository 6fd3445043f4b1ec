"""The recipe's shared facts: its constants and the arithmetic both ridge sweeps compute alike.

The torch backend runs the batched closed form (the module docstring of ``solver.py`` gives
the math) on the CPU through numpy (``numpy_sweep.py``) and on CUDA through torch
(``torch_backend.py``). What both compute the same way is written here once, as array code
that takes numpy arrays or torch tensors and returns the same kind; this module imports
neither torch nor the sweeps, so the CPU path never loads torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerprobe.probe.arrays import concat

BIAS = 100.0  # the constant bias feature; large, so the bias is barely regularised
STD_EPS = 1e-5  # added to the train std before dividing (the recipe's value)
ROW_CHUNK = 65536  # rows per step when the primal Gram matrix is accumulated
MAX_BATCH_BYTES = 1 << 30  # train features of the layers decomposed together (float32)
# The same on the CPU: a layer or two at a time, so each worker's arrays come from memory it
# has used before instead of fresh pages (12 layers at once cost ~15 % more CPU, half of it
# page faults, when two units ran side by side); the counts do not depend on the batching.
CPU_BATCH_BYTES = 4 << 20
SCORES_BYTES = 64 << 20  # scores of all probes of a layer for one block of evaluation rows
# float32 verdicts whose winning margin is below this (relative) are recomputed in float64,
# so the accuracies equal the float64 recipe's.
NEAR_TIE = 2e-5


def fold(top, bias_row, *, offset, sd):
    """The lift acting on ``[z - origin, 1]`` from ``lhs = [top; bias_row]``, which acts on
    standardised rows ``[(z - mu) / sd, 100]``.

    Parameters
    ----------
    top : (B, D, r) the feature rows of ``lhs``.
    bias_row : (B, 1, r) the bias column's row of ``lhs``.
    offset : (B, 1, D) ``m = mu - origin`` (``mu`` when the origin is 0), dtype of ``top``.
    sd : (B, 1, D) train std (+eps), dtype of ``top``.

    Returns
    -------
    (B, D + 1, r): ``[(z - mu) / sd, 100] @ lhs = (z - o) @ (top / sd) + (100 bias_row -
    (m / sd) @ top)``, the second term the last row.
    """
    row = BIAS * bias_row - (offset / sd) @ top
    return concat([top / sd.swapaxes(1, 2), row], 1)


def weights_by_lambda(rhs, eigs, l2s, *, centre: bool = False):
    """``diag(1 / (e + λ)) · rhs`` for every λ, laid out class-major: (B, r, C * L).

    Parameters
    ----------
    rhs : (B, r, C) eigenbasis projection of the ±1 targets.
    eigs : (B, r) eigenvalues.
    l2s : (L,) λ values, of the dtype of ``eigs``.
    centre : subtract the mean over classes from ``rhs`` first (see below).

    Returns
    -------
    (B, r, C * L) in the dtype of ``rhs``; column ``c * L + l`` holds class c at λ_l, so the
    scores of one class over all λ are contiguous (the accuracy count takes maxima over classes
    slice by slice).

    ``centre``: every row's scores then lose their class-independent part, which leaves the
    argmax unchanged but removes the large common offset (the bias at large λ) that would
    otherwise drown the differences between classes in float32 round-off.
    """
    if centre:
        rhs = rhs - rhs.mean(-1)[..., None]
    scale = 1.0 / (eigs[..., None] + l2s)  # (B, r, L)
    weights = rhs[..., None] * scale[..., None, :]  # (B, r, C, L)
    return weights.reshape(*weights.shape[:2], -1)


def dual_scoring_is_cheaper(rank: int, dim: int, num_columns: int, *, num_rows: int) -> bool:
    """Score through the r-dimensional eigenbasis, or through the (D + 1, C·L) weights?

    Per evaluation row the eigenbasis route costs r (D + 1) + r C L multiply-adds, the
    weight route (D + 1) C L, plus (D + 1) r C L once to form the weights.
    """
    dual = num_rows * rank * (dim + 1 + num_columns)
    primal = num_rows * (dim + 1) * num_columns + (dim + 1) * rank * num_columns
    return dual < primal


def layer_batches(
    train: Sequence[np.ndarray], layer_ids: list[int], *, budget: int | None = None
) -> list[list[int]]:
    """Runs of consecutive layers of equal width whose train features (as float32) fit
    ``budget`` bytes (default ``MAX_BATCH_BYTES``); a layer larger than that is a run alone."""
    budget = MAX_BATCH_BYTES if budget is None else budget
    batches: list[list[int]] = []
    for i in layer_ids:
        size = train[i].shape[0] * train[i].shape[1] * 4
        last = batches[-1] if batches else None
        if (
            last is not None
            and train[last[0]].shape[1] == train[i].shape[1]
            and (len(last) + 1) * size <= budget
        ):
            last.append(i)
        else:
            batches.append([i])
    return batches


def layer_shares(num_layers: int, workers: int) -> list[list[int]]:
    """The layers split into ``workers`` consecutive shares, one per single-threaded worker."""
    return [list(map(int, share)) for share in np.array_split(np.arange(num_layers), workers)]


def subsets_by_size(subsets: Sequence[np.ndarray]) -> dict[int, list[int]]:
    """The subsets' indices grouped by subset size (one batched decomposition each)."""
    by_size: dict[int, list[int]] = {}
    for p, idx in enumerate(subsets):
        by_size.setdefault(len(idx), []).append(p)
    return by_size


def is_whole_pool(subsets: Sequence[np.ndarray], ids: list[int], pool: int) -> bool:
    """Whether the subsets ``ids`` are one subset of every row in order (used without a copy)."""
    return len(ids) == 1 and np.array_equal(subsets[ids[0]], np.arange(pool))


def rows_per_block(num_columns: int, num_probes: int) -> int:
    """Evaluation rows scored per step: the float32 scores of every probe of a layer within
    ``SCORES_BYTES``."""
    return max(1, SCORES_BYTES // (4 * num_columns * num_probes))


@dataclass
class Decomposition:
    """The λ-independent part of B problems solved on the same side, in the arrays of either
    path (numpy arrays on the CPU, torch tensors on CUDA).

    Attributes
    ----------
    lift : (B, D + 1, r) maps ``[z - origin, 1]`` (features and a one) to the eigenbasis,
        standardisation and bias folded in; r = n (dual) or D + 1 (primal).
    eigs : (B, r) eigenvalues, clamped at 0.
    rhs : (B, r, C) the eigenbasis projection of the ±1 targets.
    """

    lift: Any
    eigs: Any
    rhs: Any

    @property
    def rank(self) -> int:
        return self.lift.shape[-1]

    def __getitem__(self, part: slice) -> Decomposition:
        """The problems ``part`` of the batch (views, no copy)."""
        return Decomposition(self.lift[part], self.eigs[part], self.rhs[part])
