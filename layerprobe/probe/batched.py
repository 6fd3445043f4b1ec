"""The ridge sweep's batch step, written once for numpy arrays and torch tensors.

A batch is a few layers of the same width. Their probes are solved and scored in a few
batched calls, so that Python loops run over layers and shot counts, never over probes or λ:

- problems of the same size (all seeds of one shot count, the layers of the batch) are
  decomposed together, in one batched ``eigh`` (``solver.decompose``);
- each layer's evaluation rows (validation and test together) meet all of that layer's
  probes in one float32 product, ``[z - o, 1] @ [lift_1 | W_2 | …]``: a probe is scored
  through its eigenbasis (r columns, then a product with the λ weights) or through its
  primal weights of every λ (C·L columns), whichever costs fewer multiply-adds;
- correct predictions are counted for all probes and λ of a layer at once, and float32
  verdicts too close to call are settled in float64.

The arrays are numpy's on the CPU (``numpy_sweep.py``, which never imports torch) and torch's
on CUDA (``torch_backend.py``); the decomposition is ``solver.py``'s, written once for both.
"""

from __future__ import annotations

import numpy as np

from layerprobe.probe import recipe
from layerprobe.probe.accuracy import EvalRows, count_correct
from layerprobe.probe.arrays import (
    broadcast_rows,
    cast,
    concat,
    dtype,
    empty,
    like,
    matmul,
    namespace,
    nonzero,
    pad_column,
    repeat_each,
    stack,
    tile_rows,
    zeros,
)
from layerprobe.probe.recipe import Decomposition
from layerprobe.probe.solver import decompose, lambda_weights


def sweep_batch(
    x,
    z,
    *,
    y,
    subsets,
    rows: EvalRows,
    l2,
    num_classes: int,
    dtype,
    score_dtype,
):
    """Correct-prediction counts of every probe of a batch of same-width layers.

    Parameters
    ----------
    x : (layers, N, D) train features (the pool the subsets index).
    z : (layers, M, D) evaluation features, rows in ``rows.order``.
    y : (N,) int64 train labels.
    subsets : P index arrays (numpy) into the train pool, one probe per (layer, subset).
    rows : the evaluation rows (their groups of ``x``'s kind and device).
    l2 : (L,) float64 regularisation values.
    num_classes : C.
    dtype : precision of the decompositions; ``score_dtype``: of the products with ``z``.

    Returns
    -------
    (layers, P, G, L) int64 counts, of ``x``'s kind and device.
    """
    # Evaluation rows are scored as [z - origin, 1], origin the train pool's mean, so the
    # float32 products never cancel a large common offset.
    origin = cast(x, "float32").mean(1, keepdims=True)  # (layers, 1, D)
    centred = cast(z, score_dtype, copy=True)
    centred -= cast(origin, score_dtype)
    centred = pad_column(centred, 1.0)
    plans = _decompose_all(x, y, subsets, num_classes, dtype, score_dtype, origin)
    width = num_classes * len(l2)
    chunk = recipe.rows_per_block(width, len(subsets))  # evaluation rows per step
    scores = empty((len(subsets), min(chunk, z.shape[1]), width), centred)  # reused
    tol = recipe.NEAR_TIE if score_dtype != dtype else 0.0
    # Scores are kept plan by plan (the probes of one plan side by side); `back` restores
    # the subsets' order.
    back = like(np.argsort([p for plan in plans for p in plan.subset_ids]), x)
    out = []
    for j in range(z.shape[0]):
        columns = [plan.columns(j, l2, z.shape[1]) for plan in plans]
        # Every probe of the layer side by side: (D + 1, total) for one product per row block.
        cols = concat([c.swapaxes(0, 1).reshape(c.shape[1], -1) for c, _ in columns], 1)
        counts = 0
        for start in range(0, z.shape[1], chunk):
            stop = min(start + chunk, z.shape[1])
            part = scores[:, : stop - start]
            _fill_scores(matmul(centred[j, start:stop], cols), plans, columns, part)
            block = rows.slice(start, stop)
            found, unsure = count_correct(part, block, len(l2), tol=tol)
            if unsure is not None:
                found += _settle_near_ties(
                    unsure, part, z[j, start:stop], origin[j], plans, j, l2, block
                )
            counts = counts + found
        out.append(counts[back])
    return stack(out)


def _settle_near_ties(unsure, scores, z, origin, plans, layer, l2, rows):
    """Count corrections (P, G, L) for rows whose float32 verdict was too close to call:
    their scores are recomputed in float64 from the float64 decomposition."""
    delta = zeros((scores.shape[0], rows.groups.shape[0], len(l2)), "int64", scores)
    labels = like(rows.sorted_labels(), z)
    float64 = dtype("float64", z)
    hit = unsure.any(2)  # (P, rows), plan order
    p = -1
    for plan in plans:
        k = len(plan.subset_ids)
        for i in range(k):
            p += 1
            r = nonzero(hit[p])
            if len(r) == 0:
                continue
            b = layer * k + i
            weights = lambda_weights(plan.dec[b : b + 1], l2, float64, centre=True)[0]
            zr = pad_column(cast(z[r], float64) - cast(origin, float64), 1.0)
            exact = (zr @ cast(plan.dec.lift[b], float64) @ weights).reshape(len(r), -1, len(l2))
            fast = scores[p, r].reshape(len(r), -1, len(l2))
            truth = labels[r, None]
            change = cast(exact.argmax(1) == truth, float64)
            change -= cast(fast.argmax(1) == truth, float64)
            moved = namespace(change).round(cast(rows.groups[:, r], float64) @ change)
            delta[p] += cast(moved, "int64")
    return delta


class _Plan:
    """Same-size problems of every layer in a batch, decomposed together (layer-major)."""

    def __init__(self, subset_ids: list[int], dec: Decomposition, score_dtype):
        self.subset_ids = subset_ids  # which subsets, in batch order within a layer
        self.dec = dec
        self.lift = cast(dec.lift, score_dtype)
        self.score_dtype = score_dtype

    def columns(self, layer: int, l2, num_rows: int):
        """This layer's scoring columns (k, D + 1, w) and, on the dual route, the λ weights.

        Dual route: the columns are the lift (w = r) and a second product with the λ weights
        (k, r, C * L) follows; primal route: the columns are the weights of every λ,
        ``lift @ weights`` (w = C * L). Weights are made per layer to bound memory.
        """
        k = len(self.subset_ids)
        part = slice(layer * k, (layer + 1) * k)
        dec = self.dec[part]
        weights = lambda_weights(dec, l2, self.score_dtype, centre=True)
        dim = self.lift.shape[1] - 1
        if recipe.dual_scoring_is_cheaper(dec.rank, dim, weights.shape[-1], num_rows=num_rows):
            return self.lift[part], weights
        return matmul(self.lift[part], weights), None


def _decompose_all(x, y, subsets, num_classes, dtype, score_dtype, origin) -> list:
    """Decompose every (layer, subset) problem, batched by subset size."""
    num_layers, pool, dim = x.shape
    plans = []
    for size, ids in recipe.subsets_by_size(subsets).items():
        if size == pool and recipe.is_whole_pool(subsets, ids, pool):
            xs, ys = x, broadcast_rows(y, num_layers)  # the whole pool: no copy
        else:
            idx = like(np.stack([subsets[p] for p in ids]), x)
            xs = x[:, idx].reshape(-1, size, dim)  # (layers * subsets, n, D), layer-major
            ys = tile_rows(y[idx], num_layers)
        centre = repeat_each(origin, len(ids))
        dec = decompose(xs, ys, num_classes, dtype=dtype, origin=centre)
        plans.append(_Plan(ids, dec, score_dtype))
        del xs
    return plans


def _fill_scores(product, plans, columns, scores) -> None:
    """Scores (P, rows, C * L), plan by plan, of a block of evaluation rows from their product
    with every probe's columns (rows, total): copied (primal route) or one more batched
    product (dual route)."""
    start = pos = 0
    rows = product.shape[0]
    for plan, (block, weights) in zip(plans, columns, strict=True):
        k, w = len(plan.subset_ids), block.shape[-1]
        part = product[:, start : start + k * w].reshape(rows, k, w).swapaxes(0, 1)  # (k, rows, w)
        if weights is not None:  # (k, rows, r) @ (k, r, C * L)
            matmul(part, weights, out=scores[pos : pos + k])
        else:
            scores[pos : pos + k] = part
        start += k * w
        pos += k
