"""Jobs end to end on the CPU: tiny models on small built-in tasks, local workers and
submitit's local executor; a killed run resumes; a failing unit does not stop the others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from layerprobe.cli import main
from layerprobe.errors import UserError
from layerprobe.jobs import job_status, run_job
from layerprobe.jobs.state import State
from layerprobe.results import load
from tests.jobs_helpers import BROKEN, CONVNET, L2S, SEEDS, SHOTS, TASKS, VIT, job_text, write_job

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
KEY = ["model", "task", "layer", "shots", "seed", "l2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The job (2 models x 3 tasks) run to the end by two local workers."""
    root = tmp_path_factory.mktemp("jobs")
    path = write_job(root / "tiny.toml", job_text("tiny", root, extra="\n[run]\nworkers = 2\n"))
    report = run_job(path, quiet=True)
    return path, report, load(report.plan.job.results)


def _accuracies(table):
    return table.sort_values(KEY)[KEY + ["val_accuracy", "test_accuracy", "selected"]].reset_index(
        drop=True
    )


def test_two_workers_every_row(finished):
    path, report, table = finished
    assert report.ok and report.ran == 24
    assert report.counts["extract"]["done"] == 18 and report.counts["probe"]["done"] == 6
    groups = table.groupby(["model", "task"])
    assert len(groups) == 2 * len(TASKS)
    for _, rows in groups:
        assert len(rows) == rows["layer"].nunique() * len(SHOTS) * SEEDS * len(L2S)
        assert rows["layer"].nunique() >= 3
    status = job_status(path)
    assert all(row["done"] == row["total"] for row in status.counts.values())
    again = run_job(path, quiet=True)
    assert again.ok and again.ran == 0


def test_killed_run_resumes_only_missing_units(tmp_path, finished):
    path = write_job(
        tmp_path / "kill.toml", job_text("kill", tmp_path, extra="\n[run]\nworkers = 2\n")
    )
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerprobe", "run", str(path), "--quiet"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = State(tmp_path / "kill")
    deadline = time.time() + 300
    while len(state.ids("done", "extract")) < 5 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, mid-way
    proc.wait()
    time.sleep(0.5)
    done = sum(len(state.ids("done", s)) for s in ("extract", "probe"))
    assert 5 <= done < 24, proc.stderr.read().decode()[-2000:]
    status = job_status(path)  # the killed run's running records are not "running"
    assert sum(r["running"] for r in status.counts.values()) == 0
    assert sum(r["done"] for r in status.counts.values()) == done
    report = run_job(path, workers=1, quiet=True)  # one supervised worker
    assert report.ok and report.ran == 24 - done
    resumed = _accuracies(load(report.plan.job.results))
    expected = _accuracies(finished[2])
    assert len(resumed) == len(expected)
    np.testing.assert_allclose(resumed["test_accuracy"], expected["test_accuracy"], atol=1e-12)


def test_failing_unit_is_reported_others_finish(tmp_path, capsys):
    text = job_text("broken", tmp_path, tasks=["builtin/histology"], models=BROKEN + CONVNET)
    path = write_job(tmp_path / "broken.toml", text)
    assert main(["run", str(path), "--retries", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "3 failed, 1 blocked" in err and err.count("failed: extract broken-") == 3
    status = job_status(path)
    assert status.counts["extract"] == {
        "total": 6,
        "done": 3,
        "running": 0,
        "failed": 3,
        "blocked": 0,
        "pending": 0,
    }
    assert status.counts["probe"]["done"] == 1 and status.counts["probe"]["blocked"] == 1
    for _stage, _uid, record in status.failures:
        assert record["attempts"] == 2 and "widht" in record["error"]
        log = Path(record["log"]).read_text()
        assert log.count("attempt ") == 2 and "Traceback" in log
    table = load(status.job.results)
    assert set(table["model"]) == {"python:tests.helpers_models:tiny_convnet"}


def test_submitit_local_executor_runs_the_same_job(tmp_path, finished, monkeypatch):
    """The Slurm code path (array tasks, bundles, waves) with submitit's local executor; the
    features come from the finished job's cache (shared), the probes are run again."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cache = finished[1].plan.job.cache
    extra = '\n[run]\nexecutor = "slurm"\n\n[slurm]\ncluster = "local"\nbundle = 10\ntime = 20\n'
    path = write_job(tmp_path / "slurm.toml", job_text("slurm", tmp_path, extra=extra, cache=cache))
    report = run_job(path, quiet=True)
    assert report.ok and report.ran == 24, report.failures
    tasks = list((tmp_path / "slurm" / "slurm").rglob("*_result.pkl"))
    assert len(tasks) == 3, tasks  # extraction: 2 bundles of <= 10 units; probes: 1 bundle
    np.testing.assert_allclose(
        _accuracies(load(report.plan.job.results))["test_accuracy"],
        _accuracies(finished[2])["test_accuracy"],
        atol=1e-12,
    )
    assert VIT


def test_sweep_pretrain_extract_probe_finetune(tmp_path, monkeypatch):
    """A [pretrain] grid feeds its checkpoints to extraction; fine-tuning runs per checkpoint
    (with a stand-in for layerprobe.pretrain, so units run in this process, where it is)."""
    from tests import fake_pretrain

    fake_pretrain.install(monkeypatch)
    grid = (
        '\n[pretrain]\nmodel = "tiny"\ndata_fraction = [0.5, 1.0]\nseed = [0, 1]\nepochs = 2\n'
        "\n[finetune]\nepochs = 1\n"
    )
    text = job_text("sweep", tmp_path, tasks=["builtin/histology"], models=grid)
    path = write_job(tmp_path / "sweep.toml", text)
    bad = write_job(tmp_path / "bad.toml", text.replace("[0.5, 1.0]", "[0.5, 2.0]"))
    with pytest.raises(
        UserError, match=rf"^{bad}:8: \[pretrain\] data_fraction: --data-fraction must be in"
    ):
        run_job(bad)
    report = run_job(path, quiet=True, in_process=True)  # the stand-in lives in this process
    assert report.ok
    assert sum(1 for kind, _ in fake_pretrain.CALLS if kind == "pretrain") == 4
    assert sum(1 for kind, _ in fake_pretrain.CALLS if kind == "finetune") == 4
    status = job_status(path)
    assert {s: r["done"] for s, r in status.counts.items()} == {
        "pretrain": 4,
        "extract": 12,
        "probe": 4,
        "finetune": 4,
    }
    table = load(status.job.results)
    assert table["model_key"].nunique() == 4 and set(table["data_fraction"]) == {0.5, 1.0}
    assert all(p.name == "checkpoint.pt" for p in (tmp_path / "sweep" / "runs").glob("*/*"))
    fake_pretrain.CALLS.clear()
    assert main(["sweep", str(path), "--workers", "1", "--quiet"]) == 0  # nothing left to do
    assert not fake_pretrain.CALLS
