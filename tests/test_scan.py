"""`layerprobe scan`: one checkpoint, every layer, some tasks, one command; a re-run reuses all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import layerprobe.results as results
from tests.limits import HANG

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["python:tests.helpers_models:tiny_resnet", "--image-size", "32"]


def scan(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "layerprobe", "scan", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )


@pytest.mark.slow  # two scans end to end: 62 s at load 17 on 2 cores
def test_scan_prints_best_layers_writes_a_report_and_reuses_everything(tmp_path):
    args = [
        *MODEL,
        "--tasks",
        "builtin/faces",
        "--out",
        str(tmp_path / "s"),
        "--shots",
        "2,5",
        "--seeds",
        "2",
    ]
    first = scan(*args)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].split()[:3] == ["task", "shots", "best"] and len(lines) == 4  # 2 shot counts
    table = results.load(tmp_path / "s" / "results")
    best = table[table.selected & (table.shots == 5)].groupby("layer").test_accuracy.mean()
    assert lines[2].split()[2] == best.idxmax()  # the printed best layer is the store's best
    report = tmp_path / "s" / "report.html"
    assert report.exists() and "data:image/png;base64" in report.read_text()
    again = scan(*args)
    assert again.returncode == 0 and again.stdout == first.stdout
    assert "reusing complete cache" in again.stderr and "wrote" not in again.stderr
    assert len(list((tmp_path / "s" / "results").rglob("*.parquet"))) == 1  # probed once


def test_scan_bad_input_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    for args, words in (
        (["--tasks", "builtin/nope*", "--out", str(tmp_path / "o")], "no task matches"),
        (["--tasks", "builtin/faces", "--out", str(tmp_path / "file")], "is a file"),
    ):
        run = scan(*MODEL, *args)
        assert run.returncode == 2 and words in run.stderr and run.stderr.count("\n") == 1
