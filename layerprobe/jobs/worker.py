"""A local worker process: ``python -m layerprobe.jobs.worker FD PARENT_PID``.

Started by :mod:`layerprobe.jobs.local`, never by hand. It reads from the connection on file
descriptor ``FD`` the caller's import path, then the job, then units one at a time, runs each
with :func:`~layerprobe.jobs.work.execute` (which writes the unit's log and records) and
answers with the attempts it starts and the unit's outcome. It ends when told to (``None``),
when the connection closes, and when its parent ``PARENT_PID`` ends, however that ends: on
Linux the kernel kills it (``PR_SET_PDEATHSIG``); everywhere a watcher thread kills its
process group once the parent is gone.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
import warnings

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main(argv: list[str] | None = None) -> int:
    """Serve units until told to stop; the exit status is 0, or 1 after a reported error."""
    from multiprocessing.connection import Connection

    from layerprobe.runtime.warn import show_one_line

    warnings.showwarning = show_one_line  # unit logs read like the command line's output
    fd, parent = (int(a) for a in (sys.argv[1:] if argv is None else argv))
    die_with_parent(parent)
    conn = Connection(fd)
    try:
        path = conn.recv()
        sys.path[:] = path + [p for p in sys.path if p not in path]
        init = conn.recv()
        if init["threads"] is not None:
            import torch

            torch.set_num_threads(init["threads"])
        from layerprobe.jobs.work import execute

        while (message := conn.recv()) is not None:
            work, first = message
            try:
                outcome = execute(
                    work,
                    init["job"],
                    init["retries"],
                    first=first,
                    on_attempt=lambda attempt: conn.send(("attempt", attempt)),
                )
            except Exception as err:  # the unit machinery, not the unit: the parent raises it
                conn.send(("raise", _portable(err)))
                return 1
            conn.send(("outcome", outcome))
    except EOFError:  # the parent closed the connection: nothing more to do
        pass
    return 0


def die_with_parent(parent: int) -> None:
    """End this process (and its process group) when process ``parent`` ends."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    if os.getpgid(0) == os.getpid():  # the leader of its own group: end what the unit started
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _portable(err: Exception) -> Exception:
    """``err`` with the worker's traceback as a note, or a RuntimeError saying the same when
    ``err`` cannot travel between processes."""
    text = "".join(traceback.format_exception(err))
    try:
        err.add_note(f"raised in worker process {os.getpid()}:\n{text}")
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"in worker process {os.getpid()}:\n{text}")


if __name__ == "__main__":
    raise SystemExit(main())
