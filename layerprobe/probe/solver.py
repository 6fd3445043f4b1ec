"""The closed-form few-shot probe of the recipe, batched over problems, written once for numpy
arrays and torch tensors (the result is of the kind handed in; torch is imported only when a
tensor is).

The ridge sweep runs these functions on numpy arrays on the CPU (``numpy_sweep.py``) and on
torch tensors on CUDA (``torch_backend.py``); the logistic probes and ``ridge_scores`` use
them on tensors on either device.

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

from layerprobe.probe import recipe
from layerprobe.probe.arrays import (
    cast,
    eigh_psd,
    like,
    matmul,
    namespace,
    ones,
    pad_column,
    zeros,
)
from layerprobe.probe.arrays import dtype as array_dtype

# The constants and Decomposition live in recipe.py, the array operations in arrays.py,
# blas_threads in runtime/pools.py. Tests and benchmarks also import them from here.
from layerprobe.probe.recipe import (  # noqa: F401
    BIAS,
    ROW_CHUNK,
    STD_EPS,
    Decomposition,
    dual_scoring_is_cheaper,
)
from layerprobe.runtime.pools import blas_threads  # noqa: F401

__all__ = ["decompose", "lambda_weights", "matmul", "signed_onehot"]


def signed_onehot(y, num_classes: int, dtype):
    """±1 one-hot targets: (..., n) int -> (..., n, C), in ``dtype`` (of ``y``'s kind)."""
    return 2.0 * cast(like(np.eye(num_classes), y), dtype)[y] - 1.0


def decompose(x, y, num_classes: int, *, dtype=None, origin=None) -> Decomposition:
    """Solve B problems of the same size up to the choice of λ.

    Parameters
    ----------
    x : (B, n, D) raw train features (any float dtype), a numpy array or a torch tensor.
    y : (B, n) int64 labels in [0, num_classes), of the same kind.
    num_classes : C, the number of target columns.
    dtype : dtype (of that kind) of the Gram matrix, its eigendecomposition and the lift
        (default float64, the recipe's: float32 Gram matrices can give wrong small eigenvalues).
    origin : (B, 1, D) or None; the lift then acts on ``[z - origin, 1]``. Scoring features
        centred near their mean keeps float32 products from cancelling large offsets.

    Returns
    -------
    Decomposition of arrays of ``x``'s kind.
    """
    _, n, dim = x.shape
    dtype = array_dtype("float64", x) if dtype is None else dtype
    if n < dim + 1:
        return _decompose_dual(x, y, num_classes, dtype, origin)
    return _decompose_primal(x, y, num_classes, dtype, origin)


def _decompose_dual(x, y, num_classes, dtype, origin) -> Decomposition:
    # Standardise in place on a private copy; the sums of squares go through a batched
    # product with a row of ones, much faster on the CPU than a reduction over rows.
    xs = cast(x, dtype, copy=True)  # (B, n, D)
    mu = xs.mean(1, keepdims=True)
    xs -= mu
    sd = matmul(ones((xs.shape[0], 1, xs.shape[1]), xs), xs * xs)
    sd /= xs.shape[1]
    sd = namespace(sd).sqrt(sd)
    sd += STD_EPS
    xs /= sd  # the bias column is added implicitly below
    # Gram of [xs, 100] on the cheaper side when n < D + 1: xs xsᵀ + 100².
    gram = matmul(xs, xs.swapaxes(1, 2))
    gram += BIAS * BIAS
    eigs, q = eigh_psd(gram)
    top = matmul(xs.swapaxes(1, 2), q)  # xsᵀ Q (B, D, n)
    bias_row = BIAS * q.sum(1, keepdims=True)  # the bias column's row of xaᵀ Q
    rhs = q.swapaxes(1, 2) @ signed_onehot(y, num_classes, dtype)  # Qᵀ y
    return Decomposition(_fold(top, bias_row, mu, sd, origin), eigs, rhs)


def _decompose_primal(x, y, num_classes, dtype, origin) -> Decomposition:
    batch, n, dim = x.shape
    mu, sd = _stats(x, dtype)
    gram = zeros((batch, dim + 1, dim + 1), dtype, x)
    xty = zeros((batch, dim + 1, num_classes), dtype, x)
    for i in range(0, n, ROW_CHUNK):  # xaᵀ xa and xaᵀ y, a chunk of rows at a time
        xa = pad_column((cast(x[:, i : i + ROW_CHUNK], dtype) - mu) / sd, BIAS)
        gram += matmul(xa.swapaxes(1, 2), xa)
        xty += xa.swapaxes(1, 2) @ signed_onehot(y[:, i : i + ROW_CHUNK], num_classes, dtype)
    eigs, q = eigh_psd(gram)
    rhs = q.swapaxes(1, 2) @ xty  # Qᵀ xaᵀ y
    return Decomposition(_fold(q[:, :-1], q[:, -1:], mu, sd, origin), eigs, rhs)


def _stats(x, dtype):
    """Mean and std (+eps) over rows, (B, 1, D) each, accumulated in ``dtype`` by row chunks."""
    n = x.shape[1]
    chunks = range(0, n, ROW_CHUNK)
    mu = sum(cast(x[:, i : i + ROW_CHUNK], dtype).sum(1, keepdims=True) for i in chunks) / n
    # Two passes (mean first) so a large mean cannot swamp a small variance.
    sq = sum(
        ((cast(x[:, i : i + ROW_CHUNK], dtype) - mu) ** 2).sum(1, keepdims=True) for i in chunks
    )
    return mu, namespace(sq).sqrt(sq / n) + STD_EPS


def _fold(top, bias_row, mu, sd, origin):
    """``lhs = [top; bias_row]`` (B, D + 1, r), acting on standardised rows -> the lift acting
    on ``[z - origin, 1]`` (:func:`recipe.fold`, with ``m = mu - origin``)."""
    mu, sd = cast(mu, top.dtype), cast(sd, top.dtype)
    offset = mu if origin is None else mu - cast(origin, top.dtype)
    return recipe.fold(top, cast(bias_row, top.dtype), offset=offset, sd=sd)


def lambda_weights(dec: Decomposition, l2s, dtype, *, centre: bool = False):
    """``diag(1 / (e + λ)) · rhs`` for every λ, laid out class-major: (B, r, C * L), in
    ``dtype`` (:func:`recipe.weights_by_lambda`).

    Column ``c * L + l`` holds class c at λ_l, so the scores of one class over all λ are
    contiguous (the accuracy count takes maxima over classes slice by slice).

    ``centre`` subtracts the mean over classes from ``rhs`` first: every row's scores then
    lose their class-independent part, which leaves the argmax unchanged but removes the
    large common offset (the bias at large λ) that would otherwise drown the differences
    between classes in float32 round-off.
    """
    weights = recipe.weights_by_lambda(dec.rhs, dec.eigs, cast(l2s, dec.eigs.dtype), centre=centre)
    return cast(weights, dtype)
