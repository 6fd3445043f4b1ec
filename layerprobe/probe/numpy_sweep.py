"""The torch backend on the CPU: every ridge probe of a task in a few batched numpy calls.

The same recipe (``solver.py``) and the same batch step (``batched.py``) as the torch path
(``torch_backend.py``, on CUDA), on numpy arrays, so the CLI's default probe never imports
torch; the counts are the same. A batch is a layer or two (``CPU_BATCH_BYTES``), so its arrays
reuse memory already mapped.

Products and ``eigh`` go through numpy's BLAS and LAPACK (OpenBLAS), as the torch path did on
the CPU; the layers are shared among single-threaded workers, one per core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerprobe.probe import recipe
from layerprobe.probe.accuracy import EvalRows
from layerprobe.probe.batched import sweep_batch
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
    problem = dict(y=y, subsets=subsets, rows=rows, l2=l2, num_classes=num_classes)
    precision = dict(dtype=np.dtype(dtype), score_dtype=np.dtype(score_dtype))

    def run(layer_ids: list[int]) -> None:
        for batch in recipe.layer_batches(train, layer_ids, budget=recipe.CPU_BATCH_BYTES):
            x = np.stack([np.asarray(train[i]) for i in batch])  # (layers, N, D)
            z = np.stack([np.asarray(evals[i]) for i in batch])[:, rows.order]  # (layers, M, D)
            out[batch] = sweep_batch(x, z, **problem, **precision)

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
