"""`layerprobe demo --quick`: the whole study offline, end to end, then reused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers_pretrain import ROOT, lp_home_fixture  # noqa: F401 - fixture
from tests.limits import HANG


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_a_second_run_reuses_it(lp_home, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), LAYERPROBE_HOME=str(lp_home))
    cmd = [sys.executable, "-m", "layerprobe", "demo", "--quick", "--out", str(tmp_path / "d")]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert out.startswith("4 checkpoints, 6 tasks; at 25 shots") and "report: " in out
    for task in ("builtin/objects-novel", "builtin/loc-x", "builtin/textures"):
        assert task in out
    report = tmp_path / "d" / "report" / "report.html"
    assert report.exists() and "data:image/png;base64" in report.read_text()
    assert len(list((tmp_path / "d" / "runs").rglob("*.pt"))) == 4  # 3 runs + 1 snapshot
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG)
    assert second.returncode == 0 and second.stdout == out
    assert "extracting" in second.stderr and "wrote" not in second.stderr
