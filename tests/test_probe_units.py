"""Units probed side by side (the runner's CPU mode) give exactly the rows of one at a time."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from cachefiles import write_task

from layerprobe.errors import CacheError, DataError
from layerprobe.extract.cache import cache_path
from layerprobe.probe import run
from layerprobe.probe.run import ProbeConfig, find_units, probe_unit, run_probes
from layerprobe.results import load

KEY = ["model_key", "task", "layer", "shots", "seed", "l2"]
CONFIG = dict(shots=(1, 5, 0), seeds=2, l2s=[2.0**-10, 1.0, 2.0**10], device="cpu")


def side_by_side(monkeypatch, workers: int) -> None:
    """Force the runner's units side by side (even where torch has one thread) or one by one."""
    monkeypatch.setattr(run, "_unit_workers", lambda config, num_units: min(workers, num_units))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    side_by_side(monkeypatch, 2)
    widths = {"blocks.0": 12, "blocks.1": 12, "pre_logits": 7}
    for task in ("a", "b", "c"):  # with and without a val split, two model keys
        rows = {"train": 20, "val": 4, "test": 8} if task != "b" else {"train": 20, "test": 8}
        write_task(tmp_path / "cache", task=task, num_classes=4, rows=rows, widths=widths)
    write_task(tmp_path / "cache", model_key="other-0123456789ab", task="a", widths=widths)
    return tmp_path / "cache"


def by_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="created_at").sort_values(KEY).reset_index(drop=True)


def test_side_by_side_rows_equal_one_unit_at_a_time(tmp_path, cache, monkeypatch):
    config = ProbeConfig(**CONFIG)
    summary = run_probes(cache, tmp_path / "together", config, quiet=True)
    assert len(summary.written) == 4
    side_by_side(monkeypatch, 1)
    run_probes(cache, tmp_path / "alone", config, quiet=True)
    together, alone = load(tmp_path / "together"), load(tmp_path / "alone")
    pd.testing.assert_frame_equal(by_key(together), by_key(alone), check_exact=True)
    # … and the rows of probe_unit, the public one-unit call.
    direct = pd.concat([probe_unit(u, config) for u in find_units(cache)], ignore_index=True)
    for column in ("val_accuracy", "test_accuracy", "selected", "n_train"):
        assert by_key(direct)[column].tolist() == by_key(together)[column].tolist()


def test_a_bad_unit_stops_the_run_or_is_skipped(tmp_path, cache):
    path = cache_path(cache, "toy-0123456789ab", "b", split="train")
    with h5py.File(path, "r+") as f:
        data = f["features/blocks.1"][()]
        data[3, 2] = np.nan
        f["features/blocks.1"][...] = data
    config = ProbeConfig(**CONFIG)
    with pytest.raises(DataError, match="blocks.1 has NaN or infinite features, first at row 3"):
        run_probes(cache, tmp_path / "res", config, quiet=True)
    warnings = []
    summary = run_probes(
        cache, tmp_path / "res", config, skip_bad=True, quiet=True, warn=warnings.append
    )
    assert summary.bad == ["toy-0123456789ab/b"] and len(warnings) == 1
    assert len(summary.written) + len(summary.skipped) == 3
    assert set(load(tmp_path / "res").task) == {"a", "c"}


def test_a_file_damaged_after_discovery_is_the_cache_readers_error(cache):
    """A split file truncated between finding the units and reading them (another process
    rewriting it) raises the cache reader's CacheError, naming the file."""
    config = ProbeConfig(**CONFIG)
    (unit,) = [u for u in find_units(cache) if u.name == "toy-0123456789ab/a"]
    path = unit.splits["val"].path
    with open(path, "r+b") as raw:
        raw.truncate(path.stat().st_size // 2)
    with pytest.raises(CacheError, match="delete it and extract again") as caught:
        probe_unit(unit, config)
    assert str(caught.value).startswith(f"cannot read cache file {path}: ")
