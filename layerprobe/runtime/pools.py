"""Thread pools and thread counts: BLAS and torch threads, single-threaded worker pools.

On the CPU, many mid-sized operations run fastest side by side, one per core, each on one
thread: OpenMP or BLAS threads of one operation then never wait on another's (spinning on a
busy machine made 2 threads 50× slower than 1 on small operations here).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

_local = threading.local()  # ``threads``: 1 in a single-threaded pool's workers


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_threads(count: int):
    """Context manager: numpy's BLAS (OpenBLAS) runs ``count`` threads inside it."""
    return _controller().limit(limits=count, user_api="blas")


def cpu_threads() -> int:
    """Threads the calling thread may spread work over, without importing torch.

    1 in a worker of :func:`single_threaded_pool`; else torch's intra-op thread count where
    torch is loaded (what it would use); else what torch would start with: ``OMP_NUM_THREADS``,
    or the physical cores this process may run on.
    """
    if getattr(_local, "threads", None):
        return _local.threads
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return _physical_cores()


@functools.cache
def _physical_cores() -> int:
    """Cores (not SMT siblings) among the CPUs this process may run on, as torch counts them."""
    cpus = (
        os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    )
    cores = set()
    for cpu in cpus:
        topology = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(topology + "physical_package_id") as pkg, open(topology + "core_id") as core:
                cores.add((pkg.read().strip(), core.read().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))  # no topology (not Linux): count the CPU itself
    return max(1, len(cores))


def _single_threaded_worker(torch_threads: bool) -> None:
    """A pool worker's initializer: one thread for torch (OpenMP counts are per thread) and
    for :func:`cpu_threads`."""
    _local.threads = 1
    if torch_threads:
        import torch

        torch.set_num_threads(1)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """:func:`cpu_threads` is 1 in the calling thread inside the block."""
    before = getattr(_local, "threads", None)
    _local.threads = 1
    try:
        yield
    finally:
        _local.threads = before


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
def single_threaded_pool(
    workers: int, *, name: str = "layerprobe", torch_threads: bool = True
) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads, torch and BLAS single-threaded in each (and in the caller
    while the pool is open): independent work side by side, one per core.

    Parameters
    ----------
    workers : number of threads (at least 1).
    name : prefix of the threads' names.
    torch_threads : also set torch's thread counts (this imports torch); False for work that
        runs on numpy alone (BLAS and :func:`cpu_threads` are single-threaded either way).
    """
    threads = intra_op_threads(1) if torch_threads else contextlib.nullcontext()
    with threads, blas_threads(1), one_thread():
        init = (_single_threaded_worker, (torch_threads,))
        with ThreadPoolExecutor(max(1, workers), name, *init) as pool:
            yield pool


@functools.cache
def shared_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """One long-lived pool of ``workers`` threads per (``workers``, ``name``), for work that
    recurs many times in a process (it is never shut down)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name)
