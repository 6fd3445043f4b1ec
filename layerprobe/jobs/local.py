"""The local executor: N supervised worker processes on this machine.

Each worker is a fresh ``python -m layerprobe.jobs.worker`` process (layerprobe's own entry
point: a caller's script is never imported again, so a script without an ``if __name__ ==
"__main__":`` guard works), pinned to one GPU through ``CUDA_VISIBLE_DEVICES`` when there are
several, with ``torch`` threads divided so that N workers do not oversubscribe the cores. Units
run in workers even with one worker, so this process only supervises.

A worker runs one unit at a time, so a unit that ends its worker (a native crash, a
``SIGKILL``, the out-of-memory killer, ``os._exit``) takes no other unit with it: it is
recorded failed with the signal (or exit status) and its log, and the next unit starts in a
fresh worker. Units are handed out only when their dependencies succeeded; a failed unit
blocks its dependents and nothing else.

Workers end with this process, however it ends: they are stopped when :func:`run_local`
returns or raises (Ctrl-C, ``SIGTERM`` through :func:`terminate_as_interrupt`), and on Linux
the kernel kills them if it is killed (``PR_SET_PDEATHSIG``); elsewhere, and as a second
guard, each worker watches its parent and ends its process group when the parent is gone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from pathlib import Path

from layerprobe.errors import EnvironmentProblem
from layerprobe.jobs.graph import Graph
from layerprobe.jobs.jobfile import Job
from layerprobe.jobs.state import State, now
from layerprobe.jobs.work import Outcome, Work, execute

WORKER_MODULE = "layerprobe.jobs.worker"
STOP_SECONDS = 10.0  # a worker told to stop has this long before it is killed


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


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` arrived: handled like Ctrl-C (units in flight are not recorded done)."""

    exit_code = 128 + signal.SIGTERM


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within this block, ``SIGTERM`` raises :class:`Terminated` (a ``KeyboardInterrupt``) in
    the main thread, so a terminated run unwinds as after Ctrl-C: its workers are stopped and
    its lock released. Does nothing outside the main thread or where SIGTERM is handled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield
        return

    def handler(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_local(
    graph: Graph,
    make_work: Callable[[int], Work],
    job: Job,
    *,
    workers: int,
    retries: int,
    on_outcome: Callable[[int, Outcome], None],
    on_blocked: Callable[[list[int]], None],
    in_process: bool = False,
    on_tick: Callable[[list[Work]], None] | None = None,
) -> None:
    """Run every unit of ``graph`` on ``workers`` supervised processes, reporting each end.

    A unit whose worker dies is one failed attempt: it runs again in a fresh worker while it
    has attempts left (``retries``), else it is recorded failed with the signal and its log.
    An exception raised by the unit machinery itself (not by the unit's stage, whose errors
    are the unit's failure) is raised here, after every worker has been stopped.
    ``in_process``: run the units here instead, one after another, unsupervised.
    ``on_tick``: called about once a second with the units running (for progress).
    """
    if in_process:
        while (i := graph.pop()) is not None:
            outcome = execute(make_work(i), job, retries)
            on_outcome(i, outcome)
            on_blocked(graph.finish(i, outcome.ok))
        return
    if not graph.ready:
        return
    gpus = visible_gpus() if workers > 1 else []
    threads = max(1, cpu_count() // workers) if workers > 1 else None
    slots = [
        _Worker(job, retries, gpu=gpus[w % len(gpus)] if len(gpus) > 1 else None, threads=threads)
        for w in range(workers)
    ]
    again: deque[tuple[int, Work, int]] = deque()  # units to run again: (i, work, first attempt)
    clean = False
    try:
        while graph.ready or again or any(s.unit for s in slots):
            for slot in slots:
                if slot.unit is None and (again or graph.ready):
                    i, work, first = again.popleft() if again else _next(graph, make_work)
                    slot.give(i, work, first)
            busy = [s for s in slots if s.unit]
            wait_any([s.conn for s in busy], timeout=1.0)  # a death seen within a second
            if on_tick is not None:
                on_tick([s.unit[1] for s in busy if s.unit])
            for slot in busy:
                for i, outcome, retry in slot.collect():
                    if retry is not None:
                        again.append((i, retry[0], retry[1]))
                        continue
                    on_outcome(i, outcome)
                    on_blocked(graph.finish(i, outcome.ok))
        clean = True
    finally:
        for slot in slots:
            slot.stop(clean)


def _next(graph: Graph, make_work: Callable[[int], Work]) -> tuple[int, Work, int]:
    i = graph.pop()
    return i, make_work(i), 1


class _Worker:
    """One supervised worker process slot: started when it is first given a unit, started
    afresh after its process died."""

    def __init__(self, job: Job, retries: int, *, gpu: str | None, threads: int | None):
        self.job, self.retries, self.gpu, self.threads = job, retries, gpu, threads
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.unit: tuple[int, Work] | None = None
        self.attempt = 0
        self.heard = False  # whether the process has said anything (it started)

    def give(self, i: int, work: Work, first: int) -> None:
        if self.proc is not None and _exited(self.proc):  # it ended while idle
            self._reap()
        if self.proc is None:
            self._start()
        self.unit, self.attempt = (i, work), first
        with contextlib.suppress(OSError):  # it ended just now: collect() sees it
            self.conn.send((work, first))

    def _start(self) -> None:
        env = dict(os.environ)
        root = _package_root()
        if root is not None:  # the worker imports the layerprobe this process imported
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = str(self.threads)
        ours, theirs = multiprocessing.Pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, str(theirs.fileno()), str(os.getpid())],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=_stderr_fd(),  # a unit's output goes to its log; anything else: stderr
                pass_fds=[theirs.fileno()],
                start_new_session=True,  # its own group: stopped with everything it started
            )
        finally:
            theirs.close()
        self.conn, self.heard = ours, False
        ours.send(list(sys.path))  # the caller's import path (python: model factories)
        ours.send({"job": self.job, "retries": self.retries, "threads": self.threads})

    def collect(self) -> list[tuple[int, Outcome | None, tuple[Work, int] | None]]:
        """What the worker reported: ``(i, outcome, None)`` for a unit that ended, ``(i,
        None, (work, first attempt))`` for a unit to run again in a fresh worker."""
        ended = []
        dead = _exited(self.proc)
        while self.unit:
            try:
                if not self.conn.poll():
                    break
                kind, value = self.conn.recv()
            except (EOFError, OSError):
                dead = True  # its end of the pipe closed: the worker is gone
                break
            self.heard = True
            if kind == "attempt":
                self.attempt = value
            elif kind == "outcome":
                ended.append((self.unit[0], value, None))
                self.unit = None
            else:  # "raise": the unit machinery failed, not the unit
                raise value
        if dead or (self.unit is None and _exited(self.proc)):
            heard, code = self.heard, self._reap()
            if not heard:
                how, _ = describe_exit(code)
                raise EnvironmentProblem(
                    f"a worker process ({sys.executable} -m {WORKER_MODULE}) {how} before it "
                    "could run a unit; its messages are above (is layerprobe importable there?)"
                )
            if self.unit is not None:
                ended.append(self._died(code))
                self.unit = None
        return ended

    def _died(self, code: int) -> tuple[int, Outcome | None, tuple[Work, int] | None]:
        """The unit in flight when the worker ended with ``code``: run it again in a fresh
        worker if it has attempts left, else record it failed."""
        i, work = self.unit
        unit, attempts = work.unit, self.retries + 1
        state = State(self.job.dir)
        log = state.log_path(unit.stage, unit.id)
        how, why = describe_exit(code)
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as f:
                f.write(
                    f"== {now()} {unit.stage} {unit.id} attempt {self.attempt}/{attempts}: "
                    f"its worker process {how}{f' ({why})' if why else ''}\n"
                )
        except OSError:
            pass
        if self.attempt < attempts:
            return i, None, (work, self.attempt + 1)
        error = f"its worker process {how}" + (f" ({why})" if why else "")
        record = {"error": error, "log": str(log), "attempts": self.attempt}
        record |= {"signal": signal_name(-code)} if code < 0 else {"exit_status": code}
        state.failed(unit.stage, unit.id, record)
        return i, Outcome(unit.stage, unit.id, False, error, str(log), self.attempt), None

    def _reap(self) -> int:
        """End the worker's process group (whatever the worker left running) and reap it."""
        _kill_group(self.proc, signal.SIGKILL)
        code = self.proc.wait()
        self.conn.close()
        self.proc = self.conn = None
        return code

    def stop(self, clean: bool) -> None:
        """Stop the worker: asked to stop after a clean run, terminated otherwise (then
        killed if it does not end in time), with every process of its group."""
        if self.proc is None:
            return
        if clean and self.unit is None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            _wait_exit(self.proc, STOP_SECONDS)
        else:
            _kill_group(self.proc, signal.SIGTERM)
            _wait_exit(self.proc, 2.0)
        self._reap()


def describe_exit(code: int) -> tuple[str, str]:
    """How a worker process ended (``Popen.returncode``), and a likely cause."""
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"was killed by signal {-code}", ""
        why = {
            signal.SIGKILL: "killed: out of memory, or by another process",
            signal.SIGSEGV: "a crash in native code",
            signal.SIGBUS: "a crash in native code",
            signal.SIGILL: "a crash in native code",
            signal.SIGFPE: "a crash in native code",
            signal.SIGABRT: "aborted, usually by native code",
            signal.SIGTERM: "terminated by another process",
        }.get(sig, "")
        return f"was killed by signal {sig.name}", why
    return f"exited with status {code}", "the unit's code ended its process"


def _package_root() -> str | None:
    """The folder holding this ``layerprobe`` package, unless it is a site-packages folder
    (always on the path, and not to be put before the standard library)."""
    import site

    import layerprobe

    root = os.path.realpath(Path(layerprobe.__file__).parents[1])
    sites = [*site.getsitepackages(), site.getusersitepackages()]
    return None if root in {os.path.realpath(p) for p in sites} else root


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _stderr_fd() -> int:
    """File descriptor 2 when it is open (else the worker's stray output is dropped)."""
    try:
        os.fstat(2)
    except OSError:
        return subprocess.DEVNULL
    return 2


def _exited(proc: subprocess.Popen) -> bool:
    """Whether ``proc`` has ended, without reaping it (its pid, and so its process group id,
    stays reserved until :meth:`_Worker._reap`)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _wait_exit(proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not _exited(proc) and time.monotonic() < deadline:
        time.sleep(0.02)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
