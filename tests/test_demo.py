"""`layerprobe demo --quick`: the whole study offline, end to end; a second run from the same
pre-trained checkpoints prints the same findings (that two pre-trainings give the same weights
is `tests/test_pretrain_resume.py`'s), and a rerun reuses everything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from layerprobe.results import load
from tests.helpers_pretrain import ROOT, lp_home_fixture  # noqa: F401 - fixture
from tests.limits import HANG


def findings(stdout: str) -> list[str]:
    """The summary without its last line (the report's path, which names the output folder)."""
    lines = stdout.splitlines()
    assert lines[-1].startswith("report: ")
    return lines[:-1]


@pytest.mark.slow
def test_quick_demo_again_prints_identical_findings_and_a_rerun_reuses_it(lp_home, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), LAYERPROBE_HOME=str(lp_home))

    def demo(folder: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "layerprobe",
            "demo",
            "--quick",
            "--out",
            str(tmp_path / folder),
        ]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    first = demo("a")
    shutil.copytree(tmp_path / "a" / "runs", tmp_path / "b" / "runs")  # the same checkpoints
    other = demo("b")  # extraction, probes, fits, pairs and report from scratch
    out = first.stdout
    assert findings(out) == findings(other.stdout)  # the same findings
    assert out.startswith("8 checkpoints, 6 tasks; at 25 shots")
    for task in ("builtin/objects-novel", "builtin/loc-x", "builtin/textures"):
        assert task in out
    assert "ceilings the data determine: " in out and "Spearman(saturation depth, e_IR)" in out
    # the two head-weight-decay arms give one matched pair per epoch of their schedule
    assert "head_wd 0.05 -> 1, 4 matched pairs: US accuracy " in out
    report = tmp_path / "a" / "report" / "report.html"
    assert report.exists() and "data:image/png;base64" in report.read_text()
    assert len(list((tmp_path / "a" / "runs").rglob("*.pt"))) == 8  # 2 runs + 6 snapshots
    store = load(tmp_path / "a" / "results")
    per_point = store[store.selected].groupby(["model_key", "task", "layer", "shots"]).seed
    assert (per_point.nunique() == 3).all() and store.model_key.nunique() == 8
    again = demo("a")
    assert again.stdout == out
    assert "extracting" in again.stderr and "wrote" not in again.stderr
