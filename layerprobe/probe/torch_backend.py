"""The torch backend's torch path: every probe of a task in a few batched calls.

The ridge backend named ``torch`` runs this on CUDA; on the CPU it runs the same recipe in
numpy (``numpy_sweep.py``), which gives the same counts without importing torch. This sweep
still runs on the CPU when called directly (the tests compare the two there).

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

from layerprobe.probe import recipe
from layerprobe.probe.accuracy import EvalRows, count_correct
from layerprobe.probe.recipe import dual_scoring_is_cheaper, layer_batches, layer_shares
from layerprobe.probe.solver import Decomposition, blas_threads, decompose, lambda_weights, matmul
from layerprobe.runtime.pools import cpu_threads, intra_op_threads, shared_pool

SCORE_DTYPE = torch.float32  # the large products; decompositions keep their own precision


def sweep(
    train: Sequence[np.ndarray],
    y_train: np.ndarray,
    subsets: Sequence[np.ndarray],
    *,
    evals: Sequence[np.ndarray],
    rows: EvalRows,
    l2s: np.ndarray,
    num_classes: int,
    device: torch.device | str = "cpu",
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
    device = torch.device(device)
    l2 = torch.as_tensor(np.asarray(l2s, dtype=np.float64), device=device)
    y = torch.as_tensor(np.asarray(y_train, dtype=np.int64), device=device)
    order = torch.as_tensor(rows.order, device=device)
    rows = EvalRows(rows.order, rows.segments, torch.as_tensor(rows.groups, device=device))
    out = np.zeros((len(train), len(subsets), rows.groups.shape[0], len(l2s)), dtype=np.int64)

    def run(layer_ids: list[int]) -> None:
        for batch in layer_batches(train, layer_ids):
            x = torch.stack([torch.as_tensor(train[i]) for i in batch]).to(device)
            z = torch.stack([torch.as_tensor(evals[i]) for i in batch]).to(device)[:, order]
            counts = _sweep_batch(x, y, subsets, z, rows, l2, num_classes, dtype, score_dtype)
            out[batch] = counts.cpu().numpy()

    workers = min(cpu_threads(), len(train)) if device.type == "cpu" else 1
    if workers < 2:
        run(list(range(len(train))))
        return out
    # On the CPU, one single-threaded worker per core, each with a share of the layers: many
    # small operations then never wait on each other's threads, and eigh runs in parallel.
    shares = layer_shares(len(train), workers)

    def run_single_threaded(layer_ids: list[int]) -> None:
        torch.set_num_threads(1)  # OpenMP's thread count is per thread: set it in the worker too
        run(layer_ids)

    with intra_op_threads(1), blas_threads(1):
        list(shared_pool(workers, "layerprobe-probe").map(run_single_threaded, shares))
    return out


def _sweep_batch(x, y, subsets, z, rows, l2, num_classes, dtype, score_dtype) -> torch.Tensor:
    """(layers, P, G, L) counts of a batch of same-width layers: x (layers, N, D) train
    features, z (layers, M, D) evaluation features in ``rows.order``."""
    # Evaluation rows are scored as [z - origin, 1], origin the train pool's mean, so the
    # float32 products never cancel a large common offset.
    origin = _pool_mean(x)
    centred = z.to(score_dtype) - origin.to(score_dtype)
    centred = torch.nn.functional.pad(centred, (0, 1), value=1.0)
    plans = _decompose_all(x, y, subsets, num_classes, dtype, score_dtype, origin)
    width = num_classes * len(l2)
    chunk = recipe.rows_per_block(width, len(subsets))  # evaluation rows per step
    scores = centred.new_empty((len(subsets), min(chunk, z.shape[1]), width))  # reused buffer
    tol = recipe.NEAR_TIE if score_dtype != dtype else 0.0
    # Scores are kept plan by plan (the probes of one plan side by side); `back` restores
    # the subsets' order.
    back = torch.as_tensor(np.argsort([p for plan in plans for p in plan.subset_ids]))
    out = []
    for j in range(z.shape[0]):
        columns = [plan.columns(j, l2, z.shape[1]) for plan in plans]
        # Every probe of the layer side by side: (D + 1, total) for one product per row block.
        cols = torch.cat([c.transpose(0, 1).flatten(1) for c, _ in columns], dim=1)
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
        out.append(counts[back.to(counts.device)])
    return torch.stack(out)


def _settle_near_ties(unsure, scores, z, origin, plans, layer, l2, rows) -> torch.Tensor:
    """Count corrections (P, G, L) for rows whose float32 verdict was too close to call:
    their scores are recomputed in float64 from the float64 decomposition."""
    delta = torch.zeros((scores.shape[0], rows.groups.shape[0], len(l2)), dtype=torch.int64)
    labels = torch.as_tensor(rows.sorted_labels(), device=z.device)
    hit = unsure.any(2)  # (P, rows), plan order
    p = -1
    for plan in plans:
        k = len(plan.subset_ids)
        for i in range(k):
            p += 1
            r = hit[p].nonzero().flatten()
            if len(r) == 0:
                continue
            b = layer * k + i
            weights = lambda_weights(plan.dec[b : b + 1], l2, torch.float64, centre=True)[0]
            zr = torch.nn.functional.pad(z[r].double() - origin.double(), (0, 1), value=1.0)
            exact = (zr @ plan.dec.lift[b].double() @ weights).view(len(r), -1, len(l2))
            fast = scores[p, r].view(len(r), -1, len(l2))
            truth = labels[r, None]
            change = (exact.argmax(1) == truth).double() - (fast.argmax(1) == truth).double()
            delta[p] += (rows.groups[:, r].double() @ change).round().to(torch.int64).cpu()
    return delta.to(scores.device)


def _pool_mean(x: torch.Tensor) -> torch.Tensor:
    """(layers, 1, D) float32 mean of each layer's train pool (any origin is exact as long as
    scoring and folding use the same one; near the mean keeps the scores' products small)."""
    return x.to(torch.float32).mean(1, keepdim=True)


class _Plan:
    """Same-size problems of every layer in a batch, decomposed together (layer-major)."""

    def __init__(self, subset_ids: list[int], dec: Decomposition, score_dtype: torch.dtype):
        self.subset_ids = subset_ids  # which subsets, in batch order within a layer
        self.dec = dec
        self.lift = dec.lift.to(score_dtype)
        self.score_dtype = score_dtype

    def columns(self, layer: int, l2: torch.Tensor, num_rows: int):
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
        if dual_scoring_is_cheaper(dec.rank, dim, weights.shape[-1], num_rows=num_rows):
            return self.lift[part], weights
        return matmul(self.lift[part], weights), None


def _decompose_all(x, y, subsets, num_classes, dtype, score_dtype, origin) -> list[_Plan]:
    """Decompose every (layer, subset) problem, batched by subset size."""
    num_layers, pool, _ = x.shape
    plans = []
    for size, ids in recipe.subsets_by_size(subsets).items():
        if size == pool and recipe.is_whole_pool(subsets, ids, pool):
            xs, ys = x, y.expand(num_layers, pool)  # the whole pool: no copy
        else:
            idx = torch.as_tensor(np.stack([subsets[p] for p in ids]), device=x.device)
            xs = x[:, idx].flatten(0, 1)  # (layers * subsets, n, D), layer-major
            ys = y[idx].repeat(num_layers, 1)
        centre = origin.repeat_interleave(len(ids), dim=0)
        plans.append(
            _Plan(ids, decompose(xs, ys, num_classes, dtype=dtype, origin=centre), score_dtype)
        )
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
        part = product[:, start : start + k * w].view(rows, k, w).transpose(0, 1)  # (k, rows, w)
        if weights is not None:  # (k, rows, r) @ (k, r, C * L)
            matmul(part, weights, out=scores[pos : pos + k])
        else:
            scores[pos : pos + k].copy_(part)
        start += k * w
        pos += k
