"""Running one unit (or a bundle of units) in a worker: its log file, retries and records.

The same functions run in a local worker process (:mod:`~layerprobe.jobs.worker`), in this
process (``run_job(in_process=True)``) and in a Slurm array task (through submitit), so every
executor writes the same records and logs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from layerprobe.errors import UserError, first_line
from layerprobe.jobs.jobfile import Job
from layerprobe.jobs.state import State, now
from layerprobe.jobs.units import Model, Unit


@dataclass
class Work:
    """What a worker needs to run one unit: the unit, its model and its dependencies' ids."""

    unit: Unit
    model: Model
    deps: tuple[tuple[str, str], ...] = ()  # (stage, unit id)
    redo: bool = False  # it has a done record that no longer counts (see jobs.verify)


@dataclass
class Outcome:
    """How a unit ended: ``ok``, or its one-line ``error`` and ``log`` path."""

    stage: str
    id: str
    ok: bool
    error: str = ""
    log: str = ""
    attempts: int = 1
    seconds: float = 0.0


def execute(
    work: Work,
    job: Job,
    retries: int = 0,
    *,
    first: int = 1,
    on_attempt: Callable[[int], None] | None = None,
) -> Outcome:
    """Run ``work`` up to ``1 + retries`` times, logging to its own file; write its record.

    A unit's ``done`` record is written only when its stage returned (its outputs complete);
    a unit that fails every attempt gets a ``failed`` record with the error and the log path.

    Parameters
    ----------
    work, job : the unit and its job.
    retries : attempts after the first failure.
    first : the number of this call's first attempt (> 1 when an earlier attempt ended its
        worker process and a fresh worker goes on).
    on_attempt : called with each attempt's number as it starts (the local executor's
        supervisor learns from it which attempt a worker that dies was in).
    """
    from layerprobe.jobs.stages import RUN

    unit = work.unit
    state = State(job.dir)
    log = state.log_path(unit.stage, unit.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    state.started(unit.stage, unit.id)
    start = time.perf_counter()
    error = ""
    for attempt in range(first, retries + 2):
        if on_attempt is not None:
            on_attempt(attempt)
        with _logging_to(log):
            print(
                f"== {now()} {unit.stage} {unit.id} attempt {attempt}/{retries + 1} "
                f"(pid {os.getpid()} on {socket.gethostname()})",
                flush=True,
            )
            try:
                record = RUN.get(unit.stage)(work, job, state)
            except Exception as err:  # noqa: BLE001 - every failure is reported, never fatal
                traceback.print_exc()
                error = (
                    first_line(err)
                    if isinstance(err, UserError)
                    else (f"{type(err).__name__}: {first_line(err)}")
                )
                continue
        seconds = time.perf_counter() - start
        state.succeeded(
            unit.stage, unit.id, record | {"seconds": round(seconds, 3), "attempts": attempt}
        )
        return Outcome(unit.stage, unit.id, True, log=str(log), attempts=attempt, seconds=seconds)
    seconds = time.perf_counter() - start
    state.failed(unit.stage, unit.id, {"error": error, "log": str(log), "attempts": retries + 1})
    return Outcome(unit.stage, unit.id, False, error, str(log), retries + 1, seconds)


def run_bundle(works: list[Work], job: Job, retries: int = 0) -> list[Outcome]:
    """Run units one after another (a Slurm array task); torch uses the task's CPUs."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus:
        import torch

        torch.set_num_threads(max(1, int(cpus)))
    return [execute(work, job, retries) for work in works]


@contextlib.contextmanager
def _logging_to(path):
    """Send this process's output to the end of ``path``: ``sys.stdout`` / ``sys.stderr`` and
    file descriptors 1 and 2 (so C libraries and child processes too); restore them after."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved = sys.stdout, sys.stderr
    with open(path, "a", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        sys.stdout = sys.stderr = f
        try:
            yield
        finally:
            f.flush()
            sys.stdout, sys.stderr = saved
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])
