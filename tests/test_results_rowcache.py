"""The selected-rows cache beside the store (results/rowcache.py): it serves exactly the rows of
a direct read, follows every change of the parts, survives a damaged cache, a store it cannot
write and a killed writer, and leaves the fit's output unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

import layerprobe.results.rowcache as rowcache
import layerprobe.results.store as store_module
from layerprobe.analysis.fit import READ_COLUMNS
from layerprobe.results import read_selected
from layerprobe.results.parts import part_files, write_part
from layerprobe.runtime.warn import LayerprobeWarning
from tests.limits import HANG
from tests.results_data import curve_store, probe_rows, write_store

LAYERS = [("blocks.0", 0.0), ("blocks.1", 0.5), ("pre_logits", 1.0)]


def rows_of(model: str, task: str, acc: float, **values) -> list[dict]:
    out = []
    for layer, depth in LAYERS:
        out += probe_rows(
            acc * (0.8 + 0.2 * depth),
            model_key=model,
            task=task,
            layer=layer,
            depth=depth,
            **values,
        )
    return out


def make_store(folder):
    rows = []
    for m in range(4):
        for t, task in enumerate(("alpha", "beta", "gamma")):
            rows += rows_of(f"m{m}", task, 0.5 + 0.1 * m + 0.02 * t, upstream_accuracy=0.4 + m / 10)
    write_store(rows, folder)
    settle()
    return folder


def settle():
    """Wait until the parts are older than the cache's racy window, so that they are cached."""
    time.sleep(rowcache.RACY_NS / 1e9 + 0.05)


class Opened:
    """Counts the parts the reader opens (its one per-part function)."""

    def __init__(self, monkeypatch):
        self.paths = []
        real = store_module.read_part

        def counting(path, *args):
            self.paths.append(path)
            return real(path, *args)

        monkeypatch.setattr(store_module, "read_part", counting)

    def take(self):
        paths, self.paths = self.paths, []
        return sorted(paths)


def both(folder, **kw):
    """(the direct read, the cached read) of the same store."""
    direct = read_selected(folder, row_cache=False, **kw)
    return direct, read_selected(folder, **kw)


def warnings_of(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, LayerprobeWarning)]


def test_cached_rows_are_the_direct_rows(tmp_path, monkeypatch):
    folder = make_store(tmp_path / "s")
    opened = Opened(monkeypatch)
    for kw in ({}, {"columns": READ_COLUMNS, "layers": ["pre_logits"]}, {"layers": ["blocks.1"]}):
        direct, cold = both(folder, **kw)
        assert_frame_equal(cold, direct)  # values, dtypes, categories and order
        opened.take()
        warm = read_selected(folder, **kw)
        assert opened.take() == []  # served from the cache: no part opened
        assert_frame_equal(warm, direct)
    assert rowcache.cache_path(folder).is_file()
    assert len(part_files(folder)) == 12  # the cache is never taken for a part
    assert len(pd.read_parquet(folder)) == 12 * 3 * 4  # nor by a plain dataset read


def test_changed_deleted_added_and_superseded_parts_are_seen(tmp_path, monkeypatch):
    folder = make_store(tmp_path / "s")
    read_selected(folder)  # the cache is built
    opened = Opened(monkeypatch)
    files = part_files(folder)

    # rewritten in place within the same second: same size, same mtime, only ctime differs
    target = files[0]
    for i in range(40):  # other accuracies in a part of the same size
        other = write_store(rows_of("m0", "alpha", 0.2 + i / 200), tmp_path / f"other{i}")
        new_bytes = part_files(other)[0].read_bytes()
        if len(new_bytes) == target.stat().st_size:
            break
    assert len(new_bytes) == target.stat().st_size
    assert new_bytes != target.read_bytes()
    before = target.stat()
    with open(target, "r+b") as f:
        f.write(new_bytes)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    direct, cached = both(folder)
    assert opened.take() == sorted([*files, target])  # the direct read, then only the rewritten
    assert_frame_equal(cached, direct)
    m0 = cached[(cached["model_key"] == "m0") & (cached["task"] == "alpha")]
    assert m0["test_accuracy"].max() < 0.4

    # deleted
    files[1].unlink()
    direct, cached = both(folder)
    assert_frame_equal(cached, direct)
    assert not ((cached["model_key"] == "m0") & (cached["task"] == "beta")).any()

    # added (a new checkpoint)
    write_store(rows_of("m9", "alpha", 0.9), folder)
    direct, cached = both(folder)
    assert_frame_equal(cached, direct)
    assert (cached["model_key"] == "m9").sum() == 3 * 2

    # superseded: a newer generation of m1/gamma, its old part copied back beside it (a crash
    # between the writer's rename and its removal of the old part)
    old = next(p for p in part_files(folder) if p.parent.name == "m1" and "gamma" in p.name)
    keep = old.read_bytes()
    newer = pd.DataFrame(
        rows_of("m1", "gamma", 0.2, created_at=pd.Timestamp("2026-01-01", tz="UTC"))
    )
    write_part(
        newer.astype({"k": "Int64", "converged": "boolean"}),
        folder,
        {"model_key": "m1", "task": "gamma", "probe": "ridge", "cache": "re-extracted"},
    )
    old.write_bytes(keep)
    direct, cached = both(folder)
    assert_frame_equal(cached, direct)
    gamma = cached[(cached["model_key"] == "m1") & (cached["task"] == "gamma")]
    assert len(gamma) == 6 and gamma["test_accuracy"].max() < 0.21
    settle()
    read_selected(folder)
    opened.take()
    assert_frame_equal(read_selected(folder), direct)
    assert opened.take() == []  # everything cached again


@pytest.mark.parametrize(
    "damage", ["truncated", "garbage", "no manifest", "flipped byte", "other format"]
)
def test_a_damaged_cache_is_ignored_and_rebuilt(tmp_path, monkeypatch, damage):
    folder = make_store(tmp_path / "s")
    direct = read_selected(folder, row_cache=False)
    read_selected(folder)
    cache = rowcache.cache_path(folder)
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    elif damage == "garbage":
        cache.write_bytes(b"PAR1" + os.urandom(500) + b"PAR1")
    elif damage == "no manifest":
        pd.DataFrame({"x": [1]}).to_parquet(cache)
    elif damage == "flipped byte":  # in the accuracies' page data, the footer intact
        meta = pq.ParquetFile(cache).metadata
        chunk = meta.row_group(0).column(meta.schema.names.index("test_accuracy"))
        data = bytearray(cache.read_bytes())
        data[chunk.data_page_offset + chunk.total_compressed_size - 1] ^= 0xFF
        cache.write_bytes(bytes(data))
    else:
        monkeypatch.setattr(rowcache, "FORMAT", rowcache.FORMAT + 1)
    rows, said = warnings_of(lambda: read_selected(folder))
    assert_frame_equal(rows, direct)
    if damage == "other format":
        assert said == []  # a cache of another version is rebuilt silently
    else:
        assert len(said) == 1 and "ignoring the row cache" in said[0], said
    opened = Opened(monkeypatch)
    rows, said = warnings_of(lambda: read_selected(folder))
    assert said == [] and opened.take() == []  # rebuilt: served from it again
    assert_frame_equal(rows, direct)


def test_a_store_the_cache_cannot_be_written_to_is_read_directly(tmp_path, monkeypatch):
    folder = make_store(tmp_path / "s")
    direct = read_selected(folder, row_cache=False)
    (folder / ".layerprobe").write_text("not a folder")  # the cache's folder cannot be made
    rows, said = warnings_of(lambda: read_selected(folder))
    assert_frame_equal(rows, direct)
    assert len(said) == 1 and "could not write the row cache" in said[0], said

    (folder / ".layerprobe").unlink()
    read_selected(folder)  # a cache now exists; the disk fills up before the next one is made
    good = rowcache.cache_path(folder).read_bytes()
    write_store(rows_of("m9", "alpha", 0.9), folder)
    direct = read_selected(folder, row_cache=False)

    def full(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rowcache.pq, "ParquetWriter", full)
    rows, said = warnings_of(lambda: read_selected(folder))
    assert_frame_equal(rows, direct)
    assert len(said) == 1 and "No space left on device" in said[0], said
    assert rowcache.cache_path(folder).read_bytes() == good  # the old cache, whole
    assert os.listdir(folder / ".layerprobe") == [rowcache.CACHE_NAME]  # no temporary left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_is_read_directly(tmp_path):
    folder = make_store(tmp_path / "s")
    direct = read_selected(folder, row_cache=False)
    os.chmod(folder, 0o555)
    try:
        rows, said = warnings_of(lambda: read_selected(folder))
    finally:
        os.chmod(folder, 0o755)
    assert_frame_equal(rows, direct)
    assert len(said) == 1 and "could not write the row cache" in said[0], said


KILLED = """
import os, signal, sys
import layerprobe.results.rowcache as rowcache
from layerprobe.results import read_selected
class Writer(rowcache.pq.ParquetWriter):
    def close(self):
        super().close()
        with open(self.where, "r+b") as f:  # a torn file: half of it
            f.truncate(os.path.getsize(self.where) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    def __init__(self, where, *args, **kw):
        self.where = where
        super().__init__(where, *args, **kw)
rowcache.pq.ParquetWriter = Writer
read_selected(sys.argv[1])
"""


def test_a_writer_killed_while_writing_the_cache_leaves_no_cache_that_looks_valid(
    tmp_path, monkeypatch
):
    folder = make_store(tmp_path / "s")
    direct = read_selected(folder, row_cache=False)
    run = subprocess.run([sys.executable, "-c", KILLED, str(folder)], timeout=HANG)
    assert run.returncode == -9
    assert not rowcache.cache_path(folder).exists()  # only a temporary file, never renamed
    rows, said = warnings_of(lambda: read_selected(folder))
    assert said == [] and rowcache.cache_path(folder).is_file()
    assert_frame_equal(rows, direct)


def fit(*args):
    return subprocess.run(
        [sys.executable, "-m", "layerprobe", "fit", *map(str, args), "--format", "json"],
        capture_output=True,
        timeout=HANG,
    )


def test_fit_gives_the_same_bytes_with_and_without_the_cache(tmp_path):
    folder = curve_store(tmp_path / "res", {"near": (0.9, 1.5, 0.05), "far": (0.6, 2.5, 0.3)})
    settle()
    runs = [fit("--results", folder, "--out", tmp_path / name) for name in ("a", "b")]
    assert rowcache.cache_path(folder).is_file()  # built by the first, used by the second
    shutil.copytree(folder, tmp_path / "bare", ignore=shutil.ignore_patterns(".layerprobe"))
    runs.append(fit("--results", tmp_path / "bare", "--out", tmp_path / "c", "--no-row-cache"))
    assert not (tmp_path / "bare" / ".layerprobe").exists()  # the option leaves no cache
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout == runs[1].stdout == runs[2].stdout
    assert b'"near"' in runs[0].stdout
    parquet = [(tmp_path / n / "fits.parquet").read_bytes() for n in "abc"]
    assert parquet[0] == parquet[1] == parquet[2]


def test_two_readers_at_once_both_finish_and_leave_a_valid_cache(tmp_path, monkeypatch):
    folder = make_store(tmp_path / "s")
    direct = read_selected(folder, row_cache=False)
    write_store(rows_of("m9", "alpha", 0.9), folder)  # racy: each reader opens it, and writes
    direct_now = read_selected(folder, row_cache=False)
    said = []  # the warnings of both (not warnings.catch_warnings: it is not thread-safe)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: read_selected(folder, warn=said.append), range(2)))
    assert said == []
    for rows in results:
        assert_frame_equal(rows, direct_now)
    assert len(direct_now) > len(direct)
    assert os.listdir(folder / ".layerprobe") == [rowcache.CACHE_NAME]
    settle()
    read_selected(folder)
    opened = Opened(monkeypatch)
    assert_frame_equal(read_selected(folder), direct_now)
    assert opened.take() == []
