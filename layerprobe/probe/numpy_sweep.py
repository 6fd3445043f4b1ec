"""The torch backend on the CPU: every ridge probe of a task in a few batched numpy calls.

The same recipe and the same batching as the torch path (``torch_backend.py``, on CUDA), in
numpy, so the CLI's default probe never imports torch; the counts are the same:

- problems of the same size (all seeds of one shot count, the layers of a batch) are
  decomposed in one batched ``eigh`` on the cheaper side, in float64 unless asked otherwise;
  a batch is a layer or two (``CPU_BATCH_BYTES``), so its arrays reuse memory already mapped;
- each layer's evaluation rows (validation and test together) meet all of that layer's
  probes in one float32 product, ``[z - o, 1] @ [lift_1 | W_2 | …]``: a probe is scored
  through its eigenbasis (r columns, then a product with the λ weights) or through its
  primal weights of every λ (C·L columns), whichever costs fewer multiply-adds;
- correct predictions are counted for all probes and λ of a layer at once, and float32
  verdicts too close to call are settled in float64.

Products and ``eigh`` go through numpy's BLAS and LAPACK (OpenBLAS), as the torch path did on
the CPU; the layers are shared among single-threaded workers, one per core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerprobe.probe import recipe
from layerprobe.probe.accuracy import EvalRows, count_correct
from layerprobe.probe.recipe import Decomposition
from layerprobe.runtime.pools import blas_threads, cpu_threads, one_thread, shared_pool

SCORE_DTYPE = np.float32  # the large products; decompositions keep their own precision


def sweep(
    train: Sequence[np.ndarray],
    y_train: np.ndarray,
    subsets: Sequence[np.ndarray],
    *,
    evals: Sequence[np.ndarray],
    rows: EvalRows,
    l2s: np.ndarray,
    num_classes: int,
    dtype: type = np.float64,
    score_dtype: type = SCORE_DTYPE,
) -> np.ndarray:
    """Correct-prediction counts of every (layer, train subset, group, λ), on the CPU.

    Parameters
    ----------
    train : per layer, (N, D_layer) raw train features (the pool the subsets index).
    y_train : (N,) int labels.
    subsets : P index arrays into the train pool, one probe per (layer, subset).
    evals : per layer, (M, D_layer) raw evaluation features (rows in their original order).
    rows : the evaluation rows' labels, order and groups (see :class:`EvalRows`).
    l2s : (L,) regularisation values.
    num_classes : C.
    dtype : precision of the Gram matrices and their eigendecompositions.
    score_dtype : precision of the products with the evaluation features.

    Returns
    -------
    (num_layers, P, G, L) int64 counts.
    """
    l2 = np.asarray(l2s, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.int64)
    out = np.zeros((len(train), len(subsets), rows.groups.shape[0], len(l2)), dtype=np.int64)
    problem = (y, subsets, rows, l2, num_classes, np.dtype(dtype), np.dtype(score_dtype))

    def run(layer_ids: list[int]) -> None:
        for batch in recipe.layer_batches(train, layer_ids, budget=recipe.CPU_BATCH_BYTES):
            x = np.stack([np.asarray(train[i]) for i in batch])  # (layers, N, D)
            z = np.stack([np.asarray(evals[i]) for i in batch])[:, rows.order]  # (layers, M, D)
            out[batch] = _sweep_batch(x, z, *problem)

    workers = min(cpu_threads(), len(train))
    if workers < 2:
        run(list(range(len(train))))
        return out
    # One single-threaded worker per core, each with a share of the layers: many small
    # operations then never wait on each other's threads, and eigh runs in parallel.

    def run_single_threaded(layer_ids: list[int]) -> None:
        with one_thread():
            run(layer_ids)

    with blas_threads(1):
        shares = recipe.layer_shares(len(train), workers)
        list(shared_pool(workers, "layerprobe-probe").map(run_single_threaded, shares))
    return out


def decompose(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    dtype: np.dtype,
    origin: np.ndarray,
) -> Decomposition:
    """Solve B problems of the same size up to the choice of λ.

    Parameters
    ----------
    x : (B, n, D) raw train features (any float dtype).
    y : (B, n) int64 labels in [0, num_classes).
    num_classes : C, the number of target columns.
    dtype : dtype of the Gram matrix, its eigendecomposition and the lift.
    origin : (B, 1, D); the lift acts on ``[z - origin, 1]``.
    """
    _, n, dim = x.shape
    if n < dim + 1:
        return _decompose_dual(x, y, num_classes, dtype, origin)
    return _decompose_primal(x, y, num_classes, dtype, origin)


def signed_onehot(y: np.ndarray, num_classes: int, dtype: np.dtype) -> np.ndarray:
    """±1 one-hot targets: (..., n) int -> (..., n, C)."""
    return 2.0 * np.eye(num_classes, dtype=dtype)[y] - 1.0


def _decompose_dual(x, y, num_classes, dtype, origin) -> Decomposition:
    # Standardise in place on a private copy; the sums of squares go through a batched
    # product with a row of ones, much faster than a reduction over rows.
    xs = x.astype(dtype)  # (B, n, D)
    mu = xs.mean(1, keepdims=True)
    xs -= mu
    ones = np.ones((xs.shape[0], 1, xs.shape[1]), dtype)
    sd = np.matmul(ones, xs * xs)
    sd /= xs.shape[1]
    np.sqrt(sd, out=sd)
    sd += recipe.STD_EPS
    xs /= sd  # the bias column is added implicitly below
    # Gram of [xs, 100] on the cheaper side when n < D + 1: xs xsᵀ + 100².
    gram = np.matmul(xs, xs.swapaxes(1, 2))
    gram += recipe.BIAS * recipe.BIAS
    eigs, q = _eigh(gram)
    top = np.matmul(xs.swapaxes(1, 2), q)  # xsᵀ Q (B, D, n)
    bias_row = recipe.BIAS * q.sum(1, keepdims=True)  # the bias column's row of xaᵀ Q
    rhs = q.swapaxes(1, 2) @ signed_onehot(y, num_classes, dtype)  # Qᵀ y
    return Decomposition(_fold(top, bias_row, mu, sd, origin), eigs, rhs)


def _decompose_primal(x, y, num_classes, dtype, origin) -> Decomposition:
    batch, n, dim = x.shape
    mu, sd = _stats(x, dtype)
    gram = np.zeros((batch, dim + 1, dim + 1), dtype)
    xty = np.zeros((batch, dim + 1, num_classes), dtype)
    for i in range(0, n, recipe.ROW_CHUNK):  # xaᵀ xa and xaᵀ y, a chunk of rows at a time
        xa = _augment((x[:, i : i + recipe.ROW_CHUNK].astype(dtype) - mu) / sd)
        gram += np.matmul(xa.swapaxes(1, 2), xa)
        part = signed_onehot(y[:, i : i + recipe.ROW_CHUNK], num_classes, dtype)
        xty += xa.swapaxes(1, 2) @ part
    eigs, q = _eigh(gram)
    rhs = q.swapaxes(1, 2) @ xty  # Qᵀ xaᵀ y
    return Decomposition(_fold(q[:, :-1], q[:, -1:], mu, sd, origin), eigs, rhs)


def _stats(x: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (+eps) over rows, (B, 1, D) each, accumulated in ``dtype`` by row chunks."""
    n, step = x.shape[1], recipe.ROW_CHUNK
    mu = sum(x[:, i : i + step].astype(dtype).sum(1, keepdims=True) for i in range(0, n, step))
    mu = mu / n
    # Two passes (mean first) so a large mean cannot swamp a small variance.
    sq = sum(
        ((x[:, i : i + step].astype(dtype) - mu) ** 2).sum(1, keepdims=True)
        for i in range(0, n, step)
    )
    return mu, np.sqrt(sq / n) + recipe.STD_EPS


def _augment(xs: np.ndarray) -> np.ndarray:
    """Append the constant bias column: (B, n, D) -> (B, n, D + 1)."""
    return _pad_column(xs, recipe.BIAS)


def _pad_column(a: np.ndarray, value: float) -> np.ndarray:
    """``a`` (..., D) with a constant last column: (..., D + 1), same dtype."""
    out = np.empty((*a.shape[:-1], a.shape[-1] + 1), a.dtype)
    out[..., :-1] = a
    out[..., -1] = value
    return out


def _eigh(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched symmetric eigendecomposition, eigenvalues clamped at 0.

    A batch is split over one single-threaded LAPACK call per core: the tridiagonal reduction
    scales poorly over cores, so this is about twice as fast on two cores.
    """
    workers = min(cpu_threads(), gram.shape[0])
    if workers < 2:
        eigs, q = np.linalg.eigh(gram)
    else:
        with blas_threads(1):
            parts = np.array_split(gram, workers)
            results = list(shared_pool(workers, "layerprobe-eigh").map(np.linalg.eigh, parts))
        eigs = np.concatenate([r[0] for r in results])
        q = np.concatenate([r[1] for r in results])
    # Round-off can make a PSD matrix's smallest eigenvalues slightly negative.
    np.maximum(eigs, 0.0, out=eigs)
    return eigs, q


def _fold(top, bias_row, mu, sd, origin) -> np.ndarray:
    """The lift (B, D + 1, r) on ``[z - origin, 1]`` from ``lhs = [top; bias_row]``."""
    mu, sd = mu.astype(top.dtype), sd.astype(top.dtype)
    offset = mu - origin.astype(top.dtype)
    return recipe.fold(top, bias_row.astype(top.dtype), offset=offset, sd=sd)


def lambda_weights(dec: Decomposition, l2s: np.ndarray, dtype, *, centre: bool = False):
    """(B, r, C * L) weights of every λ in ``dtype`` (:func:`recipe.weights_by_lambda`)."""
    l2s = l2s.astype(dec.eigs.dtype)
    weights = recipe.weights_by_lambda(dec.rhs, dec.eigs, l2s, centre=centre)
    return weights.astype(dtype, copy=False)


def _sweep_batch(x, z, y, subsets, rows, l2, num_classes, dtype, score_dtype) -> np.ndarray:
    """(layers, P, G, L) counts of a batch of same-width layers: x (layers, N, D) train
    features, z (layers, M, D) evaluation features in ``rows.order``."""
    # Evaluation rows are scored as [z - origin, 1], origin the train pool's mean, so the
    # float32 products never cancel a large common offset.
    origin = x.astype(np.float32).mean(1, keepdims=True)  # (layers, 1, D)
    centred = z.astype(score_dtype)
    centred -= origin.astype(score_dtype)
    centred = _pad_column(centred, 1.0)
    plans = _decompose_all(x, y, subsets, num_classes, dtype, score_dtype, origin)
    width = num_classes * len(l2)
    chunk = recipe.rows_per_block(width, len(subsets))  # evaluation rows per step
    scores = np.empty((len(subsets), min(chunk, z.shape[1]), width), score_dtype)  # reused
    tol = recipe.NEAR_TIE if score_dtype != dtype else 0.0
    # Scores are kept plan by plan (the probes of one plan side by side); `back` restores
    # the subsets' order.
    back = np.argsort([p for plan in plans for p in plan.subset_ids])
    out = []
    for j in range(z.shape[0]):
        columns = [plan.columns(j, l2, z.shape[1]) for plan in plans]
        # Every probe of the layer side by side: (D + 1, total) for one product per row block.
        cols = np.concatenate([c.swapaxes(0, 1).reshape(c.shape[1], -1) for c, _ in columns], 1)
        counts = 0
        for start in range(0, z.shape[1], chunk):
            stop = min(start + chunk, z.shape[1])
            part = scores[:, : stop - start]
            _fill_scores(np.matmul(centred[j, start:stop], cols), plans, columns, part)
            block = rows.slice(start, stop)
            found, unsure = count_correct(part, block, len(l2), tol=tol)
            if unsure is not None:
                found += _settle_near_ties(
                    unsure, part, z[j, start:stop], origin[j], plans, j, l2, block
                )
            counts = counts + found
        out.append(counts[back])
    return np.stack(out)


def _settle_near_ties(unsure, scores, z, origin, plans, layer, l2, rows) -> np.ndarray:
    """Count corrections (P, G, L) for rows whose float32 verdict was too close to call:
    their scores are recomputed in float64 from the float64 decomposition."""
    delta = np.zeros((scores.shape[0], rows.groups.shape[0], len(l2)), dtype=np.int64)
    labels = rows.sorted_labels()
    hit = unsure.any(2)  # (P, rows), plan order
    p = -1
    for plan in plans:
        k = len(plan.subset_ids)
        for i in range(k):
            p += 1
            r = np.flatnonzero(hit[p])
            if len(r) == 0:
                continue
            b = layer * k + i
            weights = lambda_weights(plan.dec[b : b + 1], l2, np.float64, centre=True)[0]
            zr = _pad_column(z[r].astype(np.float64) - origin.astype(np.float64), 1.0)
            exact = (zr @ plan.dec.lift[b].astype(np.float64) @ weights).reshape(
                len(r), -1, len(l2)
            )
            fast = scores[p, r].reshape(len(r), -1, len(l2))
            truth = labels[r, None]
            change = (exact.argmax(1) == truth).astype(np.float64)
            change -= fast.argmax(1) == truth
            delta[p] += np.round(rows.groups[:, r].astype(np.float64) @ change).astype(np.int64)
    return delta


class _Plan:
    """Same-size problems of every layer in a batch, decomposed together (layer-major)."""

    def __init__(self, subset_ids: list[int], dec: Decomposition, score_dtype: np.dtype):
        self.subset_ids = subset_ids  # which subsets, in batch order within a layer
        self.dec = dec
        self.lift = dec.lift.astype(score_dtype)
        self.score_dtype = score_dtype

    def columns(self, layer: int, l2: np.ndarray, num_rows: int):
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
        return np.matmul(self.lift[part], weights), None


def _decompose_all(x, y, subsets, num_classes, dtype, score_dtype, origin) -> list[_Plan]:
    """Decompose every (layer, subset) problem, batched by subset size."""
    num_layers, pool, _ = x.shape
    plans = []
    for size, ids in recipe.subsets_by_size(subsets).items():
        if size == pool and recipe.is_whole_pool(subsets, ids, pool):
            xs, ys = x, np.broadcast_to(y, (num_layers, pool))  # the whole pool: no copy
        else:
            idx = np.stack([subsets[p] for p in ids])
            xs = x[:, idx].reshape(-1, size, x.shape[2])  # (layers * subsets, n, D), layer-major
            ys = np.tile(y[idx], (num_layers, 1))
        centre = np.repeat(origin, len(ids), axis=0)
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
            np.matmul(part, weights, out=scores[pos : pos + k])
        else:
            scores[pos : pos + k] = part
        start += k * w
        pos += k
