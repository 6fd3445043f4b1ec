"""The torch backend: every probe of a task in a few batched calls (CPU or CUDA).

Work is organised so that Python loops run over layers and shot counts, never over probes
or λ values:

- problems of the same size (all seeds of one shot count, all layers of one width) are
  decomposed in one batched ``eigh``, in float64 unless asked otherwise;
- each layer's evaluation rows (validation and test together) meet all of that layer's
  probes in one float32 matrix product, ``[z, 1] @ [lift_1 | W_2 | …]``, where a probe is
  scored through its eigenbasis (``lift``, r columns, then a second product with the λ
  weights) or through its primal weights of every λ (``W``, C·L columns), whichever costs
  fewer multiply-adds;
- correct predictions are counted for all probes and λ of a layer at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from layerprobe.probe.accuracy import EvalRows, count_correct
from layerprobe.probe.solver import decompose, dual_scoring_is_cheaper, lambda_weights

SCORE_DTYPE = torch.float32  # the large products; decompositions keep their own precision
MAX_BATCH_BYTES = 1 << 30  # train features of the layers decomposed together (float32)


def sweep(
    train: Sequence[np.ndarray],
    y_train: np.ndarray,
    subsets: Sequence[np.ndarray],
    evals: Sequence[np.ndarray],
    rows: EvalRows,
    l2s: np.ndarray,
    num_classes: int,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
    score_dtype: torch.dtype = SCORE_DTYPE,
) -> np.ndarray:
    """Correct-prediction counts of every (layer, train subset, group, λ).

    Parameters
    ----------
    train : per layer, (N, D_layer) raw train features (the pool the subsets index).
    y_train : (N,) int labels.
    subsets : P index arrays into the train pool, one probe per (layer, subset).
    evals : per layer, (M, D_layer) raw evaluation features (rows in their original order).
    rows : the evaluation rows' labels, order and groups (see :class:`EvalRows`).
    l2s : (L,) regularisation values.
    num_classes : C.
    device : torch device.
    dtype : precision of the Gram matrices and their eigendecompositions.
    score_dtype : precision of the products with the evaluation features.

    Returns
    -------
    (num_layers, P, G, L) int64 counts.
    """
    l2 = torch.as_tensor(np.asarray(l2s, dtype=np.float64), device=device)
    y = torch.as_tensor(np.asarray(y_train, dtype=np.int64), device=device)
    order = torch.as_tensor(rows.order, device=device)
    rows_dev = EvalRows(rows.order, rows.segments, rows.groups.to(device))
    out = np.zeros((len(train), len(subsets), rows.groups.shape[0], len(l2s)), dtype=np.int64)
    for layer_ids in _layer_batches(train):
        x = torch.stack([torch.as_tensor(train[i]) for i in layer_ids]).to(device)
        # Evaluation rows are scored as [z - origin, 1], origin the train pool's mean, so the
        # float32 products never cancel a large common offset.
        origin = _pool_mean(x)
        z = torch.stack([torch.as_tensor(evals[i]) for i in layer_ids]).to(device)
        z = (z[:, order].to(origin.dtype) - origin).to(score_dtype)
        z = torch.nn.functional.pad(z, (0, 1), value=1.0)
        plans = _decompose_all(
            x, y, subsets, num_classes, l2, dtype, score_dtype, z.shape[1], origin
        )
        del x
        # One scores buffer for every layer of the batch: (P, M, C * L), reused.
        scores = z.new_empty((len(subsets), z.shape[1], num_classes * len(l2s)))
        for j, layer in enumerate(layer_ids):
            counts = _score_layer(z[j], j, plans, scores, rows_dev, len(l2s))
            out[layer] = counts.cpu().numpy()
    return out


def _layer_batches(train: Sequence[np.ndarray]) -> list[list[int]]:
    """Runs of consecutive layers of equal width whose train features fit the memory budget."""
    batches: list[list[int]] = []
    for i, feats in enumerate(train):
        size = feats.shape[0] * feats.shape[1] * 4
        last = batches[-1] if batches else None
        if (
            last is not None
            and train[last[0]].shape[1] == feats.shape[1]
            and (len(last) + 1) * size <= MAX_BATCH_BYTES
        ):
            last.append(i)
        else:
            batches.append([i])
    return batches


class _Plan:
    """One batch of same-size problems: for every (layer, subset) its scoring columns."""

    def __init__(self, subset_ids, lift, weights, dual):
        self.subset_ids = subset_ids  # which subsets, in batch order within a layer
        self.dual = dual
        # dual: columns are the lift (D + 1, r), then a second product with the λ weights;
        # primal: columns are the weights of every λ, lift @ weights (D + 1, C * L).
        self.columns = lift if dual else torch.bmm(lift, weights)
        self.weights = weights if dual else None

    def width(self) -> int:
        return self.columns.shape[-1]


def _pool_mean(x: torch.Tensor) -> torch.Tensor:
    """(layers, 1, D) float64 mean of each layer's train pool."""
    return torch.stack([layer.to(torch.float64).mean(0, keepdim=True) for layer in x])


def _decompose_all(
    x, y, subsets, num_classes, l2, dtype, score_dtype, num_rows, origin
) -> list[_Plan]:
    """Decompose every (layer, subset) problem, batched by subset size."""
    num_layers, pool, dim = x.shape
    by_size: dict[int, list[int]] = {}
    for p, idx in enumerate(subsets):
        by_size.setdefault(len(idx), []).append(p)
    plans = []
    for size, ids in by_size.items():
        if size == pool and len(ids) == 1 and np.array_equal(subsets[ids[0]], np.arange(pool)):
            xs, ys = x, y.expand(num_layers, pool)  # the whole pool: no copy
        else:
            idx = torch.as_tensor(np.stack([subsets[p] for p in ids]), device=x.device)
            xs = x[:, idx].flatten(0, 1)  # (layers * subsets, n, D), layer-major
            ys = y[idx].repeat(num_layers, 1)
        centre = origin.repeat_interleave(len(ids), dim=0)
        dec = decompose(xs, ys, num_classes, dtype, centre)
        del xs
        weights = lambda_weights(dec, l2, score_dtype, centre=True)
        dual = dual_scoring_is_cheaper(dec.rank, dim, weights.shape[-1], num_rows)
        plans.append(_Plan(ids, dec.lift.to(score_dtype), weights, dual))
    return plans


def _score_layer(z, layer, plans, scores, rows, num_l2) -> torch.Tensor:
    """(P, G, L) counts of one layer: one product for all its probes, then the count."""
    per_layer = [len(plan.subset_ids) for plan in plans]
    blocks = [
        plan.columns[layer * k : (layer + 1) * k] for plan, k in zip(plans, per_layer, strict=True)
    ]
    cols = torch.cat([b.transpose(0, 1).flatten(1) for b in blocks], dim=1)  # (D + 1, total)
    product = z @ cols  # (M, total): every probe of this layer in one product
    start = 0
    for plan, k in zip(plans, per_layer, strict=True):
        r = plan.width()
        for i, p in enumerate(plan.subset_ids):
            part = product[:, start + i * r : start + (i + 1) * r]
            if plan.dual:  # (M, r) @ (r, C * L)
                torch.mm(part, plan.weights[layer * k + i], out=scores[p])
            else:
                scores[p].copy_(part)
        start += k * r
    return count_correct(scores, rows, num_l2)
