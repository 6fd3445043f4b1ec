"""The local executor: N worker processes on this machine (or this process for one worker).

Workers are ``spawn``-ed (no forked CUDA or thread state), each pinned to one GPU through
``CUDA_VISIBLE_DEVICES`` when there are several, with ``torch`` threads divided so that N
workers do not oversubscribe the cores. Units are handed out only when their dependencies
succeeded; a failed unit blocks its dependents and nothing else.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from layerprobe.jobs.graph import Graph
from layerprobe.jobs.jobfile import Job
from layerprobe.jobs.work import Outcome, Work, execute

_job: Job | None = None
_retries = 0


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs this process may use (``CUDA_VISIBLE_DEVICES``, else every CUDA device)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _init(gpus, threads: int, job: Job, retries: int) -> None:
    """Worker start: its GPU, its share of the cores, the job."""
    global _job, _retries
    gpu = gpus.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    _job, _retries = job, retries


def _run(work: Work) -> Outcome:
    return execute(work, _job, _retries)


def run_local(
    graph: Graph,
    make_work: Callable[[int], Work],
    job: Job,
    workers: int,
    retries: int,
    on_outcome: Callable[[int, Outcome], None],
    on_blocked: Callable[[list[int]], None],
) -> None:
    """Run every unit of ``graph`` on ``workers`` processes, reporting each end."""
    if workers == 1:
        while (i := graph.pop()) is not None:
            outcome = execute(make_work(i), job, retries)
            on_outcome(i, outcome)
            on_blocked(graph.finish(i, outcome.ok))
        return
    gpus = visible_gpus()
    threads = max(1, cpu_count() // workers)
    context = multiprocessing.get_context("spawn")
    while graph.ready:
        queue = context.Queue()
        for w in range(workers):
            queue.put(gpus[w % len(gpus)] if len(gpus) > 1 else None)
        pool = ProcessPoolExecutor(workers, context, _init, (queue, threads, job, retries))
        try:
            _drain(pool, graph, make_work, job, workers, on_outcome, on_blocked)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _drain(pool, graph, make_work, job, workers, on_outcome, on_blocked) -> None:
    """Keep every worker busy (two units queued each) until the graph is empty or a worker
    process dies; the units it was running are reported failed."""
    running: dict = {}
    while graph.ready or running:
        while len(running) < 2 * workers and (i := graph.pop()) is not None:
            work = make_work(i)
            running[pool.submit(_run, work)] = (i, work)
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        broken = False
        for future in finished:
            i, work = running.pop(future)
            try:
                outcome = future.result()
            except BrokenProcessPool:
                broken = True
                outcome = _died(work, job)
            on_outcome(i, outcome)
            on_blocked(graph.finish(i, outcome.ok))
        if broken:
            for i, work in running.values():
                outcome = _died(work, job)
                on_outcome(i, outcome)
                on_blocked(graph.finish(i, outcome.ok))
            return


def _died(work: Work, job: Job) -> Outcome:
    """A unit whose worker process died (killed, out of memory, a crash in native code)."""
    from layerprobe.jobs.state import State

    unit = work.unit
    state = State(job.dir)
    log = str(state.log_path(unit.stage, unit.id))
    error = "its worker process died (killed, out of memory, or a crash in native code)"
    state.failed(unit.stage, unit.id, {"error": error, "log": log, "attempts": 1})
    return Outcome(unit.stage, unit.id, False, error, log)
