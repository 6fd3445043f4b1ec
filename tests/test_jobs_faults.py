"""The local executor's fault isolation, with real processes: a model factory that kills its
own worker (SIGKILL, a native crash) fails only its units, with the signal and a log that holds
what the unit printed; one worker is supervised too; a script without a main guard can call
``run_job``; SIGTERM and kill -9 of ``layerprobe run`` leave no worker behind, and the job
resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerprobe.cli import main
from layerprobe.jobs import job_status, run_job
from layerprobe.jobs.state import State
from layerprobe.results import load
from tests.helpers_crash import LAST_WORDS
from tests.jobs_helpers import CONVNET, job_text, write_job
from tests.limits import HANG

pytestmark = pytest.mark.slow  # every worker process imports torch: seconds each
REPO = Path(__file__).resolve().parents[1]
HEALTHY = "python:tests.helpers_models:tiny_convnet"


def crash_model(how: str, once: Path | None = None) -> str:
    args = f'how = "{how}"' + (f', once = "{once}"' if once else "")
    return f"""
[[models]]
spec = "python:tests.helpers_crash:crashing_convnet"
label = "crash"
image_size = 32
model_args = {{ {args} }}
"""


def small_job(root: Path, name: str, models: str, tasks=("builtin/histology",)) -> Path:
    """A job of ``models`` on ``tasks`` (train, val and test splits of each are extracted)."""
    return write_job(root / f"{name}.toml", job_text(name, root, tasks=list(tasks), models=models))


def env() -> dict:
    return os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    }


def check_crashed(job_dir: Path, signame: str, attempts: int) -> None:
    """The crash model's extract units are failed with ``signame`` and a log that holds what
    the unit printed; the healthy model's units are done; its rows alone are in the store."""
    state = State(job_dir)
    failed = state.ids("failed", "extract")
    assert len(failed) == 3 and all(uid.startswith("crash-") for uid in failed)
    for uid in failed:
        record = state.read("failed", "extract", uid)
        assert record["signal"] == signame and record["attempts"] == attempts
        assert f"killed by signal {signame}" in record["error"]
        log = Path(record["log"]).read_text()
        assert log.count(LAST_WORDS) == attempts
        assert log.count(f"its worker process was killed by signal {signame}") == attempts
        for k in range(1, attempts + 1):
            assert f"attempt {k}/{attempts} (pid" in log
    assert {uid.split("~")[0].split("-")[0] for uid in state.ids("done", "extract")} == {
        "tiny_convnet"
    }
    assert len(state.ids("done", "extract")) == 3 and len(state.ids("done", "probe")) == 1
    assert not state.ids("running", "extract")
    assert set(load(job_dir / "results")["model"]) == {HEALTHY}


def test_script_without_main_guard_two_workers_one_model_kills_its_worker(tmp_path):
    """The README's snippet as a script with no ``if __name__ == "__main__":`` guard: the
    workers never run it again; the units of the model that kills its worker fail with
    SIGKILL, the healthy model's units finish, and the report says the run failed."""
    path = small_job(tmp_path, "guard", crash_model("kill") + CONVNET)
    script = tmp_path / "snippet.py"
    script.write_text(
        "from layerprobe.jobs import run_job\n"
        "print('the script ran', flush=True)\n"
        f"report = run_job({str(path)!r}, workers=2, quiet=True)\n"
        "print('ok', report.ok, report.counts['extract'])\n"
        "for f in report.failures:\n"
        "    print('failure', f.stage, f.id, f.log)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert out.count("the script ran") == 1, out
    assert "ok False {'total': 6, 'done_before': 0, 'ran': 6, 'done': 3, 'failed': 3" in out
    failures = [line.split() for line in out.splitlines() if line.startswith("failure ")]
    assert len(failures) == 3 and all(Path(f[3]).is_file() for f in failures)
    assert done.stderr.count("its worker process was killed by signal SIGKILL") == 3
    check_crashed(tmp_path / "guard", "SIGKILL", attempts=1)
    status = job_status(path)
    assert status.counts["probe"]["blocked"] == 1 and status.counts["extract"]["failed"] == 3


def test_one_worker_native_crash_is_recorded_and_the_run_goes_on(tmp_path, capsys):
    """``--workers 1``: a segmentation fault in a model factory is recorded with the signal;
    the run finishes the healthy model's units and exits 1."""
    path = small_job(tmp_path, "segv", crash_model("segv") + CONVNET)
    assert main(["run", str(path), "--workers", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("its worker process was killed by signal SIGSEGV (a crash in native") == 3
    assert "ran 7 unit(s): 4 done, 3 failed, 1 blocked" in err
    check_crashed(tmp_path / "segv", "SIGSEGV", attempts=1)


def test_a_unit_whose_worker_died_is_retried_in_a_fresh_worker(tmp_path):
    """With ``retries = 1`` a worker's death is one failed attempt: the unit runs again in a
    fresh worker and finishes; its log holds both attempts."""
    path = small_job(tmp_path, "once", crash_model("kill", once=tmp_path / "crashed"))
    report = run_job(path, workers=1, retries=1, quiet=True)
    assert report.ok and report.ran == 4
    state = State(tmp_path / "once")
    retried = [
        uid
        for uid in state.ids("done", "extract")
        if state.read("done", "extract", uid)["attempts"] == 2
    ]
    assert len(retried) == 1 and len(state.ids("done", "extract")) == 3
    log = state.log_path("extract", retried[0]).read_text()
    assert (
        LAST_WORDS in log and "attempt 1/2: its worker process was killed by signal SIGKILL" in log
    )
    first, second = (
        int(line.split("(pid ")[1].split()[0]) for line in log.splitlines() if "(pid " in line
    )
    assert first != second  # the second attempt ran in another process


def _workers_of(pid: int) -> list[int]:
    """Live worker processes started by process ``pid`` (their command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"layerprobe.jobs.worker" in argv and str(pid).encode() in argv:
            found.append(int(entry.name))
    return found


def _gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    """The processes of ``pids`` still alive (not zombies) after up to ``seconds``."""
    deadline = time.time() + seconds
    while True:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.1)


def _start_and_stop(path: Path, job_dir: Path, sig: int) -> subprocess.CompletedProcess:
    """Start ``layerprobe run``, send ``sig`` once it has finished a unit; check that no worker
    process is left; return the ended process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerprobe", "run", str(path), "--quiet", "--workers", "2"],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    state = State(job_dir)
    before = len(state.ids("done", "extract"))
    deadline = time.time() + 300
    workers = []
    while proc.poll() is None and time.time() < deadline:
        if len(state.ids("done", "extract")) > before and (workers := _workers_of(proc.pid)):
            break
        time.sleep(0.2)
    assert proc.poll() is None and workers, "the run ended before it could be stopped"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=HANG)
    assert not _gone(workers), f"workers left after {signal.Signals(sig).name}: {err[-2000:]}"
    assert not _workers_of(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def test_sigterm_and_kill9_of_run_leave_no_workers_and_the_job_resumes(tmp_path):
    tasks = ("builtin/histology", "builtin/textures", "builtin/occlusion")
    path = small_job(tmp_path, "stop", CONVNET, tasks=tasks)
    job_dir = tmp_path / "stop"
    total = 3 * len(tasks) + len(tasks)  # extract (3 splits) and probe units

    term = _start_and_stop(path, job_dir, signal.SIGTERM)
    assert term.returncode == 143 and "layerprobe: terminated (SIGTERM)" in term.stderr
    assert "Traceback" not in term.stderr
    state = State(job_dir)
    done_records = {s: state.ids("done", s) for s in ("extract", "probe")}
    for stage, ids in done_records.items():  # a done record only for complete outputs
        for uid in ids:
            assert all(
                Path(p).exists()
                for p in json.loads(state.path("done", stage, uid).read_text())["outputs"]
            )

    killed = _start_and_stop(path, job_dir, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    before = sum(len(state.ids("done", s)) for s in ("extract", "probe"))
    assert before < total
    assert sum(r["running"] for r in job_status(path).counts.values()) == 0

    report = run_job(path, quiet=True, in_process=True)  # no worker start-up: quicker
    assert report.ok and report.ran == total - before
    table = load(job_dir / "results")
    assert set(table["task"]) == set(tasks) and set(table["model"]) == {HEALTHY}


def test_a_worker_that_cannot_start_ends_the_run_in_one_line(tmp_path, monkeypatch, capsys):
    """A worker that ends before it runs anything (here: its module cannot be found) is a
    problem of the machine, not of a unit: one line, exit 2, no unit recorded failed."""
    from layerprobe.jobs import local

    monkeypatch.setattr(local, "WORKER_MODULE", "layerprobe.jobs.no_such_worker")
    path = small_job(tmp_path, "nostart", CONVNET)
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("layerprobe: error: a worker process (") and "exited with status 1" in err
    state = State(tmp_path / "nostart")
    assert not state.ids("failed", "extract") and not state.ids("done", "extract")
