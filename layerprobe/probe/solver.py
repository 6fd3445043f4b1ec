"""The closed-form few-shot probe of the recipe, batched over problems, in torch.

The torch backend runs these functions on CUDA (and the logistic probes and ``ridge_scores``
use them on the CPU); its CPU sweep computes the same steps in numpy (``numpy_sweep.py``).

One problem is a train set ``x`` (n, D) with labels, solved for every L2 value at once:

1. standardise with the train set's mean and std (+1e-5) and append a bias column of 100
   (so the bias is almost unregularised): ``xa`` (n, D + 1);
2. targets are ±1 one-hot: ``y`` (n, C);
3. one symmetric eigendecomposition on the cheaper side,
   ``xa xaᵀ = Q diag(e) Qᵀ`` when n < D + 1 (dual), ``xaᵀ xa = Q diag(e) Qᵀ`` otherwise (primal);
4. ``W(λ) = lhs · diag(1 / (e + λ)) · rhs`` with ``lhs = xaᵀ Q, rhs = Qᵀ y`` (dual) or
   ``lhs = Q, rhs = Qᵀ xaᵀ y`` (primal): every λ from the one decomposition.

Evaluation features are scored without standardising them: the standardisation is folded
into ``lhs`` (``lhs / sd`` and an offset row ``100 · lhs_bias - ((mu - o) / sd) · lhs``), so
``[z - o, 1] @ lift`` equals ``[(z - mu) / sd, 100] @ lhs`` for any row ``z``; the origin
``o`` (0, or the train pool's mean) only keeps float32 products free of large offsets.
"""

from __future__ import annotations

import numpy as np
import torch

from layerprobe.probe import recipe

# The constants, Decomposition and dual_scoring_is_cheaper live in recipe.py (shared with the
# numpy path);
# blas_threads in runtime/pools.py. Tests and benchmarks also import them from here.
from layerprobe.probe.recipe import (  # noqa: F401
    BIAS,
    ROW_CHUNK,
    STD_EPS,
    Decomposition,
    dual_scoring_is_cheaper,
)
from layerprobe.runtime.pools import blas_threads, cpu_threads, shared_pool  # noqa: F401


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` (batched like numpy); on the CPU through numpy's BLAS (OpenBLAS), which runs
    these shapes 20-35 % faster than torch's MKL on the AMD CPUs measured (benchmarks/)."""
    if a.device.type != "cpu":
        return torch.matmul(a, b, out=out)
    result = np.matmul(a.numpy(), b.numpy(), out=None if out is None else out.numpy())
    return out if out is not None else torch.from_numpy(result)


def signed_onehot(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """±1 one-hot targets: (..., n) int -> (..., n, C)."""
    hot = torch.nn.functional.one_hot(y, num_classes).to(dtype)
    return 2.0 * hot - 1.0


def decompose(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    dtype: torch.dtype = torch.float64,
    origin: torch.Tensor | None = None,
    lift_dtype: torch.dtype | None = None,
) -> Decomposition:
    """Solve B problems of the same size up to the choice of λ.

    Parameters
    ----------
    x : (B, n, D) raw train features (any float dtype).
    y : (B, n) int64 labels in [0, num_classes).
    num_classes : C, the number of target columns.
    dtype : dtype of the Gram matrix and its eigendecomposition (float64 by default;
        float32 Gram matrices can give wrong small eigenvalues).
    origin : (B, 1, D) or None; the lift then acts on ``[z - origin, 1]``. Scoring features
        centred near their mean keeps float32 products from cancelling large offsets.
    lift_dtype : dtype of ``xaᵀ Q`` on the dual side (default ``dtype``). float32 loses
        accuracy here: the bias column (100) dwarfs the standardised features.
    """
    _, n, dim = x.shape
    if n < dim + 1:
        return _decompose_dual(x, y, num_classes, dtype, origin, lift_dtype or dtype)
    return _decompose_primal(x, y, num_classes, dtype, origin)


def _stats(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (+eps) over rows, (B, 1, D) each, accumulated in ``dtype`` by row chunks."""
    n = x.shape[1]
    total = sum(
        x[:, i : i + ROW_CHUNK].to(dtype).sum(1, keepdim=True) for i in range(0, n, ROW_CHUNK)
    )
    mu = total / n
    # Two passes (mean first) so a large mean cannot swamp a small variance.
    sq = sum(
        ((x[:, i : i + ROW_CHUNK].to(dtype) - mu) ** 2).sum(1, keepdim=True)
        for i in range(0, n, ROW_CHUNK)
    )
    return mu, (sq / n).sqrt() + STD_EPS


def _augment(xs: torch.Tensor) -> torch.Tensor:
    """Append the constant bias column: (B, n, D) -> (B, n, D + 1)."""
    return torch.nn.functional.pad(xs, (0, 1), value=BIAS)


def _eigh(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched symmetric eigendecomposition, eigenvalues clamped at 0.

    On the CPU a batch is split over one single-threaded LAPACK call per core: torch runs a
    batch one matrix after another, and the tridiagonal reduction scales poorly over cores,
    so this is about twice as fast on two cores.
    """
    workers = min(cpu_threads(), gram.shape[0])
    if gram.device.type != "cpu":
        eigs, q = torch.linalg.eigh(gram)
    elif workers < 2:  # numpy's LAPACK (OpenBLAS) is the faster one here too
        eigs, q = (torch.from_numpy(a) for a in np.linalg.eigh(gram.numpy()))
    else:
        parts = np.array_split(gram.numpy(), workers)
        with blas_threads(1):
            results = list(shared_pool(workers, "layerprobe-eigh").map(np.linalg.eigh, parts))
        eigs = torch.from_numpy(np.concatenate([r[0] for r in results]))
        q = torch.from_numpy(np.concatenate([r[1] for r in results]))
    # Round-off can make a PSD matrix's smallest eigenvalues slightly negative.
    return eigs.clamp_min_(0.0), q


def _fold(top: torch.Tensor, bias_row: torch.Tensor, mu, sd, origin) -> torch.Tensor:
    """``lhs = [top; bias_row]`` (B, D + 1, r), acting on standardised rows -> the lift acting
    on ``[z - origin, 1]``. With ``m = mu - origin``:

    ``[(z - mu) / sd, 100] @ lhs = (z - origin) @ (top / sd) + (100 bias_row - (m / sd) @ top)``.
    """
    mu, sd = mu.to(top.dtype), sd.to(top.dtype)
    if origin is not None:
        mu = mu - origin.to(top.dtype)
    return recipe.fold(top, bias_row.to(top.dtype), offset=mu, sd=sd)


def _decompose_dual(x, y, num_classes, dtype, origin, lift_dtype) -> Decomposition:
    # Standardise in place on a private copy; the sums of squares go through a batched
    # product with a row of ones, much faster on the CPU than a reduction over rows.
    xs = x.to(dtype, copy=True)  # (B, n, D)
    mu = xs.mean(1, keepdim=True)
    xs.sub_(mu)
    ones = xs.new_ones((xs.shape[0], 1, xs.shape[1]))
    sd = (torch.bmm(ones, xs * xs) / xs.shape[1]).sqrt_().add_(STD_EPS)
    xs.div_(sd)  # the bias column is added implicitly below
    # Gram of [xs, 100] on the cheaper side when n < D + 1: xs xsᵀ + 100².
    eigs, q = _eigh(matmul(xs, xs.transpose(1, 2)).add_(BIAS * BIAS))
    top = matmul(xs.transpose(1, 2).to(lift_dtype), q.to(lift_dtype))  # xsᵀ Q (B, D, n)
    bias_row = BIAS * q.sum(1, keepdim=True)  # the bias column's row of xaᵀ Q
    rhs = q.transpose(1, 2) @ signed_onehot(y, num_classes, dtype)  # Qᵀ y
    return Decomposition(_fold(top, bias_row, mu, sd, origin), eigs, rhs)


def _decompose_primal(x, y, num_classes, dtype, origin) -> Decomposition:
    batch, n, dim = x.shape
    mu, sd = _stats(x, dtype)
    gram = x.new_zeros((batch, dim + 1, dim + 1), dtype=dtype)
    xty = x.new_zeros((batch, dim + 1, num_classes), dtype=dtype)
    for i in range(0, n, ROW_CHUNK):  # xaᵀ xa and xaᵀ y, a chunk of rows at a time
        xa = _augment((x[:, i : i + ROW_CHUNK].to(dtype) - mu) / sd)
        gram += matmul(xa.transpose(1, 2), xa)
        xty += xa.transpose(1, 2) @ signed_onehot(y[:, i : i + ROW_CHUNK], num_classes, dtype)
    eigs, q = _eigh(gram)
    rhs = q.transpose(1, 2) @ xty  # Qᵀ xaᵀ y
    return Decomposition(_fold(q[:, :-1], q[:, -1:], mu, sd, origin), eigs, rhs)


def lambda_weights(
    dec: Decomposition, l2s: torch.Tensor, dtype: torch.dtype, *, centre: bool = False
) -> torch.Tensor:
    """``diag(1 / (e + λ)) · rhs`` for every λ, laid out class-major: (B, r, C * L).

    Column ``c * L + l`` holds class c at λ_l, so the scores of one class over all λ are
    contiguous (the accuracy count takes maxima over classes slice by slice).

    ``centre`` subtracts the mean over classes from ``rhs`` first: every row's scores then
    lose their class-independent part, which leaves the argmax unchanged but removes the
    large common offset (the bias at large λ) that would otherwise drown the differences
    between classes in float32 round-off.
    """
    l2s = l2s.to(dec.eigs.dtype)
    return recipe.weights_by_lambda(dec.rhs, dec.eigs, l2s, centre=centre).to(dtype)
