"""Array operations written once for numpy arrays and torch tensors.

The closed form (``solver.py``), the ridge sweep's batch step (``batched.py``) and the probe's
counting (``accuracy.py``) run on numpy arrays on the CPU — without importing torch — and on
torch tensors on CUDA (and on the CPU where the logistic probes call them). Most of what
they do means the same in both (indexing, ``@``, ``reshape``, ``swapaxes``, in-place
arithmetic); the few operations spelt differently are here, each dispatching on the kind of
array it is handed. torch is imported only when a tensor is.
"""

from __future__ import annotations

import numpy as np

from layerprobe.runtime.pools import blas_threads, cpu_threads, shared_pool


def namespace(array):
    """numpy, or torch for a tensor (imported only then)."""
    if isinstance(array, np.ndarray):
        return np
    import torch

    return torch


def like(values: np.ndarray, array):
    """``values`` (numpy) as the kind of ``array``: itself, or a tensor on its device."""
    if isinstance(array, np.ndarray):
        return values
    import torch

    return torch.as_tensor(values, device=array.device)


def dtype(name: str, array):
    """The dtype named ``name`` (``"float64"`` …) of ``array``'s kind."""
    return np.dtype(name) if isinstance(array, np.ndarray) else getattr(namespace(array), name)


def cast(array, to, *, copy: bool = False):
    """``array`` converted to the dtype ``to`` (a name, or a dtype of the array's kind); a new
    array with ``copy`` even where the dtype is already ``to`` (safe to change in place)."""
    if isinstance(array, np.ndarray):
        return array.astype(to, copy=copy)
    return array.to(dtype(to, array) if isinstance(to, str) else to, copy=copy)


def empty(shape: tuple[int, ...], like_array):
    """An uninitialised array of ``shape``, of ``like_array``'s kind, dtype and device."""
    if isinstance(like_array, np.ndarray):
        return np.empty(shape, like_array.dtype)
    return like_array.new_empty(shape)


def zeros(shape: tuple[int, ...], to, like_array):
    """Zeros of ``shape`` and the dtype ``to`` (a name, or a dtype of the array's kind), of
    ``like_array``'s kind and device."""
    if isinstance(like_array, np.ndarray):
        return np.zeros(shape, to)
    return like_array.new_zeros(shape, dtype=dtype(to, like_array) if isinstance(to, str) else to)


def ones(shape: tuple[int, ...], like_array):
    """Ones of ``shape``, of ``like_array``'s kind, dtype and device."""
    if isinstance(like_array, np.ndarray):
        return np.ones(shape, like_array.dtype)
    return like_array.new_ones(shape)


def pad_column(array, value: float):
    """``array`` (..., D) with a constant last column: (..., D + 1), same dtype."""
    if isinstance(array, np.ndarray):
        out = np.empty((*array.shape[:-1], array.shape[-1] + 1), array.dtype)
        out[..., :-1] = array
        out[..., -1] = value
        return out
    import torch

    return torch.nn.functional.pad(array, (0, 1), value=value)


def concat(arrays: list, axis: int):
    """``arrays`` joined along ``axis``."""
    if isinstance(arrays[0], np.ndarray):
        return np.concatenate(arrays, axis)
    return namespace(arrays[0]).cat(arrays, dim=axis)


def stack(arrays: list):
    """``arrays`` stacked along a new first axis."""
    return namespace(arrays[0]).stack(arrays)


def nonzero(mask):
    """(K,) positions of the true entries of the 1-D ``mask``."""
    if isinstance(mask, np.ndarray):
        return np.flatnonzero(mask)
    return mask.nonzero().flatten()


def repeat_each(array, times: int):
    """Each entry of ``array``'s first axis ``times`` times in a row (``np.repeat``)."""
    if isinstance(array, np.ndarray):
        return np.repeat(array, times, axis=0)
    return array.repeat_interleave(times, dim=0)


def tile_rows(array, times: int):
    """``array`` (k, n) stacked ``times`` times: (times * k, n) (``np.tile``)."""
    if isinstance(array, np.ndarray):
        return np.tile(array, (times, 1))
    return array.repeat(times, 1)


def broadcast_rows(array, times: int):
    """``array`` (n,) as (times, n) without a copy."""
    if isinstance(array, np.ndarray):
        return np.broadcast_to(array, (times, len(array)))
    return array.expand(times, len(array))


def matmul(a, b, out=None):
    """``a @ b`` (batched like numpy), into ``out`` if given. A torch tensor on the CPU goes
    through numpy's BLAS (OpenBLAS), which runs these shapes 20-35 % faster than torch's MKL
    on the AMD CPUs measured (benchmarks/)."""
    if isinstance(a, np.ndarray):
        return np.matmul(a, b, out=out)
    if a.device.type != "cpu":
        return namespace(a).matmul(a, b, out=out)
    import torch

    result = np.matmul(a.numpy(), b.numpy(), out=None if out is None else out.numpy())
    return out if out is not None else torch.from_numpy(result)


def eigh_psd(gram):
    """Batched symmetric eigendecomposition of positive semi-definite matrices (B, r, r):
    eigenvalues (B, r) ascending, clamped at 0, and eigenvectors (B, r, r).

    On the CPU (numpy, or torch through numpy's LAPACK, the faster one here too) a batch is
    split over one single-threaded LAPACK call per core: the tridiagonal reduction scales
    poorly over cores, so this is about twice as fast on two cores.
    """
    if not isinstance(gram, np.ndarray) and gram.device.type != "cpu":
        eigs, q = namespace(gram).linalg.eigh(gram)
        return eigs.clamp_min_(0.0), q
    host = gram if isinstance(gram, np.ndarray) else gram.numpy()
    workers = min(cpu_threads(), host.shape[0])
    if workers < 2:
        eigs, q = np.linalg.eigh(host)
    else:
        with blas_threads(1):
            parts = np.array_split(host, workers)
            results = list(shared_pool(workers, "layerprobe-eigh").map(np.linalg.eigh, parts))
        eigs = np.concatenate([r[0] for r in results])
        q = np.concatenate([r[1] for r in results])
    # Round-off can make a PSD matrix's smallest eigenvalues slightly negative.
    np.maximum(eigs, 0.0, out=eigs)
    if isinstance(gram, np.ndarray):
        return eigs, q
    import torch

    return torch.from_numpy(eigs), torch.from_numpy(q)
