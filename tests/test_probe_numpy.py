"""The torch backend's CPU path runs in numpy: the same counts as its torch path, and
`layerprobe probe` (ridge, CPU) never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cachefiles import write_task

from layerprobe.probe import numpy_sweep, torch_backend
from layerprobe.probe.accuracy import EvalRows
from layerprobe.probe.backends import sweep_probes
from layerprobe.runtime import devices

L2S = np.asarray([2.0**k for k in range(-10, 20, 3)])
ROOT = Path(__file__).resolve().parent.parent


def problem(seed: int, *, pool: int, widths, classes: int, rows: int, dtype=np.float32):
    """Per layer train (pool, D) and evaluation (rows, D) features with class structure,
    their labels and groups (0/1)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(pool) % classes)
    y_eval = rng.integers(0, classes, rows)
    train, evals = [], []
    for width in widths:
        centres = rng.normal(size=(classes, width)) * rng.uniform(0.2, 2.0)
        scale = rng.uniform(0.5, 3.0, width)
        train.append(((centres[y] + rng.normal(size=(pool, width))) * scale + 5).astype(dtype))
        evals.append(((centres[y_eval] + rng.normal(size=(rows, width))) * scale + 5).astype(dtype))
    return train, y, evals, y_eval, rng.integers(0, 2, rows)


def few_shot(y: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` rows of every class of ``y``, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(y == c))[:shots] for c in np.unique(y)])


def both_paths(train, y, subsets, evals, y_eval, group, classes, precision):
    """Counts of the numpy path and of the torch path on the CPU, same problem."""
    rows = EvalRows.build(y_eval, group, 2)
    args = (train, y, subsets)
    common = {"evals": evals, "rows": rows, "l2s": L2S, "num_classes": classes}
    ours = numpy_sweep.sweep(*args, **common, dtype=getattr(np, precision))
    theirs = torch_backend.sweep(*args, **common, device="cpu", dtype=getattr(torch, precision))
    return ours, theirs


CASES = {
    # pool rows, layer widths, classes, evaluation rows: 1-shot and few-shot on the dual side,
    # the whole pool on the primal side (pool > width), several widths in one call
    "dual-and-primal": (150, (30, 30, 7), 4, 90),
    "wide-dual-only": (60, (96, 64), 5, 70),
    "many-classes": (260, (24,), 70, 200),  # above MAX_SEGMENTS: the argmax count
}


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_path_gives_the_torch_paths_counts(case, seed, precision):
    pool, widths, classes, rows = CASES[case]
    dtype = np.float16 if seed == 2 else np.float32  # as caches store them
    train, y, evals, y_eval, group = problem(
        seed, pool=pool, widths=widths, classes=classes, rows=rows, dtype=dtype
    )
    subsets = [few_shot(y, k, s) for k in (1, 2, 3) for s in (seed, seed + 7)]
    subsets += [np.arange(pool), np.random.default_rng(seed).permutation(pool)[: pool // 2]]
    ours, theirs = both_paths(train, y, subsets, evals, y_eval, group, classes, precision)
    assert ours.dtype == np.int64 and ours.shape == (len(widths), len(subsets), 2, len(L2S))
    if precision == "float64":  # the default: float32 scores, near ties settled in float64
        np.testing.assert_array_equal(ours, theirs)
    else:
        assert_float32_round_off(ours, theirs)


def assert_float32_round_off(ours, theirs):
    """float32 decompositions have no float64 settling of near ties: a verdict that close can
    go either way with the round-off of the reductions (numpy's pairwise sums and OpenBLAS
    against torch's cascade sums and MKL), so a rare count differs by one."""
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.01, (diff > 0).sum()


def test_ties_count_the_same(monkeypatch):
    """Exact ties: duplicated evaluation rows, classes absent from a subset (equal scores),
    constant features; and every verdict settled in float64."""
    from layerprobe.probe import recipe

    train, y, evals, y_eval, group = problem(3, pool=80, widths=(12, 5), classes=6, rows=40)
    evals = [np.concatenate([e, e[:10]]) for e in evals]  # duplicated rows
    y_eval, group = np.concatenate([y_eval, y_eval[:10]]), np.concatenate([group, group[:10]])
    train[1][:] = 2.5  # a constant layer: every class scores the same
    evals[1][:] = 2.5
    partial = np.flatnonzero(y < 3)[:9]  # classes 3-5 absent: their scores tie
    subsets = [partial, few_shot(y, 1, 0), np.arange(80)]
    for near_tie in (recipe.NEAR_TIE, 1.0):
        monkeypatch.setattr(recipe, "NEAR_TIE", near_tie)
        ours, theirs = both_paths(train, y, subsets, evals, y_eval, group, 6, "float64")
        np.testing.assert_array_equal(ours, theirs)
        ours, theirs = both_paths(train, y, subsets, evals, y_eval, group, 6, "float32")
        assert_float32_round_off(ours, theirs)


def test_cpu_resolution_needs_no_torch_where_no_gpu_can_be(monkeypatch):
    monkeypatch.setattr(devices, "no_gpu_here", lambda: True)
    assert devices.resolve_device_name("auto") == "cpu"
    assert devices.resolve_device_name("cpu") == "cpu"
    monkeypatch.setattr(devices, "no_gpu_here", lambda: False)  # a driver: torch is asked
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert devices.resolve_device_name("auto") == expected
    assert devices.resolve_device_name("cpu") == "cpu"
    with pytest.raises(devices.ConfigError, match="unknown device 'gpu'"):
        devices.resolve_device_name("gpu")


def test_no_gpu_here_reads_the_driver_files(monkeypatch):
    present: set[str] = set()
    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.setattr(devices.os.path, "exists", lambda p: p in present)
    monkeypatch.setattr(devices.glob, "glob", lambda p: [p] if p in present else [])
    assert devices.no_gpu_here()
    present.add("/proc/driver/nvidia/version")
    assert not devices.no_gpu_here()
    present.clear()
    present.add("/dev/nvidia[0-9]*")
    assert not devices.no_gpu_here()
    monkeypatch.setattr(devices.sys, "platform", "darwin")  # no such files to read: ask torch
    present.clear()
    assert not devices.no_gpu_here()


# Runs `layerprobe probe` as `python -m layerprobe` does and reports, at exit, whether torch
# was ever imported.
RUN_AND_REPORT = """
import atexit, runpy, sys
atexit.register(lambda: print("torch imported:", "torch" in sys.modules, file=sys.stderr))
sys.argv = ["layerprobe", *sys.argv[1:]]
runpy.run_module("layerprobe", run_name="__main__")
"""


def torch_path_solver(family, backend, *, device, precision):
    """The runner's ridge solver, through the torch path on the CPU."""
    assert (family, backend, device) == ("ridge", "torch", "cpu")

    def solve(probes, l2s):
        dtype = getattr(torch, precision)
        counts = sweep_probes(torch_backend.sweep, probes, l2s, device="cpu", dtype=dtype)
        return counts, None

    return solve


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_probe_command_on_the_cpu_never_imports_torch(tmp_path, monkeypatch, device):
    from layerprobe.probe import ProbeConfig
    from layerprobe.probe import rows as probe_rows
    from layerprobe.probe.units import find_units
    from layerprobe.results import load

    cache = tmp_path / "cache"
    for task in ("toy", "other", "third", "fourth", "fifth"):  # enough units to run side by side
        write_task(cache, task=task, rows={"train": 30, "val": 6, "test": 12})
    argv = ["probe", "--cache", str(cache), "--shots", "1,5", "--seeds", "2", "--quiet"]
    argv += ["--results", str(tmp_path / "results"), "--device", device]
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT, *argv],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    if device == "auto" and not devices.no_gpu_here():
        pytest.skip("a GPU driver is here: auto asks torch")
    assert "torch imported: False" in done.stderr
    # Its rows are those of the same probe through the torch path.
    keys = ["task", "layer", "shots", "seed", "l2"]
    rows = load(tmp_path / "results").sort_values(keys)
    assert (rows["backend"] == "torch").all()
    monkeypatch.setattr(probe_rows, "family_solver", torch_path_solver)
    config = ProbeConfig(shots=[1, 5], seeds=2, device="cpu")
    expected = pd.concat([probe_rows.probe_unit(u, config) for u in find_units(cache)])
    expected = expected.sort_values(keys)
    for column in (*keys, "val_accuracy", "test_accuracy", "selected", "n_train"):
        np.testing.assert_array_equal(rows[column].to_numpy(), expected[column].to_numpy())
