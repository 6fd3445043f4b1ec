"""The torch backend's torch path: every probe of a task in a few batched calls.

The ridge backend named ``torch`` runs this on CUDA; on the CPU it runs the same recipe in
numpy (``numpy_sweep.py``), which gives the same counts without importing torch. This sweep
still runs on the CPU when called directly (the tests compare the two there).

Both paths share the batch step (``batched.py``): problems of the same size decomposed in one
batched ``eigh``, every probe of a layer scored in one float32 product, correct predictions
counted for all probes and λ at once; here on torch tensors on ``device``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from layerprobe.probe.accuracy import EvalRows
from layerprobe.probe.batched import sweep_batch
from layerprobe.probe.recipe import layer_batches, layer_shares
from layerprobe.runtime.pools import blas_threads, cpu_threads, intra_op_threads, shared_pool

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
    """Correct-prediction counts of every (layer, train subset, group, λ), on ``device``.

    The parameters and the result are those of the CPU path's
    :func:`~layerprobe.probe.numpy_sweep.sweep`, with torch dtypes for ``dtype`` (the
    decompositions) and ``score_dtype`` (the products with the evaluation features), and
    ``device`` the torch device the work runs on.
    """
    device = torch.device(device)
    l2 = torch.as_tensor(np.asarray(l2s, dtype=np.float64), device=device)
    y = torch.as_tensor(np.asarray(y_train, dtype=np.int64), device=device)
    order = torch.as_tensor(rows.order, device=device)
    rows = EvalRows(rows.order, rows.segments, torch.as_tensor(rows.groups, device=device))
    out = np.zeros((len(train), len(subsets), rows.groups.shape[0], len(l2s)), dtype=np.int64)
    problem = dict(y=y, subsets=subsets, rows=rows, l2=l2, num_classes=num_classes)

    def run(layer_ids: list[int]) -> None:
        for batch in layer_batches(train, layer_ids):
            x = torch.stack([torch.as_tensor(train[i]) for i in batch]).to(device)
            z = torch.stack([torch.as_tensor(evals[i]) for i in batch]).to(device)[:, order]
            counts = sweep_batch(x, z, **problem, dtype=dtype, score_dtype=score_dtype)
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
