"""Thread pools and thread counts: BLAS and torch threads, single-threaded worker pools.

On the CPU, many mid-sized operations run fastest side by side, one per core, each on one
thread: OpenMP or BLAS threads of one operation then never wait on another's (spinning on a
busy machine made 2 threads 50× slower than 1 on small operations here).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_threads(count: int):
    """Context manager: numpy's BLAS (OpenBLAS) runs ``count`` threads inside it."""
    return _controller().limit(limits=count, user_api="blas")


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Torch runs ``count`` intra-op threads (in the calling thread) inside the block."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def single_threaded_pool(workers: int, *, name: str = "layerprobe") -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads, torch and BLAS single-threaded in each (and in the caller
    while the pool is open): independent work side by side, one per core.

    Parameters
    ----------
    workers : number of threads (at least 1).
    name : prefix of the threads' names.
    """
    import torch

    with intra_op_threads(1), blas_threads(1):
        # OpenMP's thread count is per thread: set it in every worker too.
        with ThreadPoolExecutor(max(1, workers), name, torch.set_num_threads, (1,)) as pool:
            yield pool


@functools.cache
def shared_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """One long-lived pool of ``workers`` threads per (``workers``, ``name``), for work that
    recurs many times in a process (it is never shut down)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name)
