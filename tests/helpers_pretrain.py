"""Shared bits of the pretrain tests: a shared decoded-image cache, one CPU thread, the CLI.

The machine running the tests has 2 cores shared with other jobs: one torch thread per
process keeps a contended run from slowing down tenfold (and makes runs comparable bit for bit).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.limits import HANG

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 1 / 120  # builtin/upstream has 120 classes


@pytest.fixture(scope="module", name="lp_home")
def lp_home_fixture(tmp_path_factory):
    """$LAYERPROBE_HOME shared by every pretrain test of the session (images decoded once)."""
    home = tmp_path_factory.getbasetemp() / "layerprobe-home"
    home.mkdir(exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAYERPROBE_HOME", str(home))
        yield home
    torch.set_num_threads(threads)


def cli_env(home: Path) -> dict:
    env = dict(os.environ, LAYERPROBE_HOME=str(home), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_cli(home: Path, *args: str, timeout: float = HANG) -> subprocess.CompletedProcess:
    """``python -m layerprobe ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "layerprobe", *args],
        env=cli_env(home),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
