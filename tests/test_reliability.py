"""Nothing stale, nothing lost, nothing torn: what a user's disk and cluster do to the tool.

Each test does the real thing (files changed on disk, names that collide, two processes racing
on the create step, read-only folders that hold for root too, damaged files) and asserts what a
user would see: fresh numbers, both tasks' rows, no finished-looking corrupt file, one line
and exit 2.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import layerprobe.results as results
from layerprobe.cli import main
from layerprobe.extract import ExtractConfig, extract, find_caches, read_arrays
from layerprobe.probe import ProbeConfig, probe_cache
from tests.conftest import _write_class_folders
from tests.helpers_cli import python_started
from tests.helpers_models import TINY_VIT, TINY_VIT_KWARGS
from tests.limits import HANG

ROOT = Path(__file__).resolve().parents[1]
VIT_ARGS = [f"--model-arg={k}={v!r}" for k, v in TINY_VIT_KWARGS.items()]


def extract_vit(folder, cache) -> list[str]:
    """``layerprobe extract`` arguments: the tiny ViT on the image folder ``folder``."""
    model = ["--model", TINY_VIT, *VIT_ARGS]
    return ["extract", *model, "--task", f"folder:{folder}", "--cache", str(cache)]


PROBE = ProbeConfig(shots=[2], seeds=1, l2s=[1.0, 100.0])


def cli(*args: str, as_plain_user: bool = False) -> subprocess.CompletedProcess:
    """``layerprobe ARGS`` in a fresh process; with ``as_plain_user``, a root caller drops the
    capabilities that let root ignore file permissions (see ``plain_user``)."""
    cmd = [sys.executable, "-m", "layerprobe", *args]
    if as_plain_user and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG)


def one_line_exit_2(run: subprocess.CompletedProcess) -> str:
    """The error line of a run that must end with one line and exit 2. Warnings (such as the
    notice that a tiny test model has random weights) are lines of their own and may precede it."""
    assert run.returncode == 2, run.stderr
    lines = [
        line
        for line in run.stderr.strip().splitlines()
        if not line.startswith("layerprobe: warning:")
    ]
    assert "Traceback" not in run.stderr and len(lines) == 1, run.stderr
    return lines[0]


def config(cache, **kw) -> ExtractConfig:
    return ExtractConfig(cache_dir=cache, layers="blocks.2,pre_logits", quiet=True, **kw)


# -- 1. identity that follows the data ---------------------------------------------------------
def test_changed_images_are_extracted_and_probed_again(tiny_vit, split_folder, tmp_path, capsys):
    task, cache, store = f"folder:{split_folder}", tmp_path / "cache", tmp_path / "res"
    extract(tiny_vit, task, config(cache))
    assert len(probe_cache(cache, store, PROBE).written) == 1
    before = results.load(store)
    # Replace every train image of class_a by a brighter one (new bytes, new size, new mtime).
    for path in sorted((split_folder / "train" / "class_a").glob("*.png")):
        Image.fromarray(np.full((30, 30, 3), 250, np.uint8)).save(path)
    capsys.readouterr()
    extract(tiny_vit, task, ExtractConfig.build(config(cache), quiet=False))
    said = capsys.readouterr().err
    assert "extracting" in said and "again: the images of folder:" in said and "changed" in said
    again = probe_cache(cache, store, PROBE)
    assert len(again.written) == 1 and not again.skipped  # never "already in store"
    after = results.load(store)
    assert len(after) == len(before) and (after.created_at > before.created_at.max()).all()
    fresh = tmp_path / "fresh"  # the same probe on a store that never saw the old images
    probe_cache(cache, fresh, PROBE)
    assert after.test_accuracy.tolist() == results.load(fresh).test_accuracy.tolist()


def test_another_dtype_is_probed_again(tiny_vit, split_folder, tmp_path):
    task, cache, store = f"folder:{split_folder}", tmp_path / "cache", tmp_path / "res"
    extract(tiny_vit, task, config(cache))
    probe_cache(cache, store, PROBE)
    extract(tiny_vit, task, config(cache, dtype="float32"))
    assert len(probe_cache(cache, store, PROBE).written) == 1


# -- 2. part files that cannot collide ----------------------------------------------------------
def test_tasks_whose_names_simplify_alike_keep_both_results(tiny_vit, tmp_path):
    data, cache, store = tmp_path / "data", tmp_path / "cache", tmp_path / "res"
    for name in ("x y", "x_y"):
        for split, n in (("train", 6), ("val", 2), ("test", 2)):
            _write_class_folders(data / name / split, per_class=n, seed=len(name + split))
        extract(tiny_vit, f"folder:{data / name}", config(cache))
    assert len(probe_cache(cache, store, PROBE).written) == 2
    assert len(probe_cache(cache, store, PROBE, force=True).written) == 2
    table = results.load(store)
    assert {Path(t.split(":", 1)[1]).name for t in table.task} == {"x y", "x_y"}
    assert len(list(store.rglob("*.parquet"))) == 2


# -- 3. an atomic partial file ------------------------------------------------------------------
RACE = """
import sys, time
import layerprobe.extract.writer as writer
original = writer._create
def slow_create(*args, **kwargs):
    time.sleep(2.0)  # hold at the create step: the other process arrives here too
    return original(*args, **kwargs)
writer._create = slow_create
from layerprobe.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_processes_racing_on_the_create_step_never_tear_a_file(split_folder, tmp_path):
    args = [*extract_vit(split_folder, tmp_path / "cache"), "--split", "train", "--quiet"]
    procs = [python_started("-c", RACE, *args) for _ in range(2)]
    outcomes = sorted((p.wait(timeout=HANG), p.stderr.read()) for p in procs)
    assert [code for code, _ in outcomes] == [0, 2]
    assert "being written by another process" in outcomes[1][1]
    (info,) = find_caches(tmp_path / "cache")
    labels, _, feats = read_arrays(info.path)
    assert len(labels) == 18 and all(len(v) == 18 for v in feats.values())
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".")]  # no locks


# -- 4. one-line errors instead of tracebacks ---------------------------------------------------
@pytest.fixture
def plain_user():
    """Permissions must apply to the CLI. Root ignores them, so a root test run drops the two
    capabilities that override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) and stays root:
    unlike switching to ``nobody``, that still reaches a clone inside a private (mode 700)
    home folder, with its virtual environment."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: read-only folders cannot be tested")
    return True


def test_read_only_cache_and_results_folders_fail_before_the_work(
    split_folder, tmp_path, plain_user
):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    os.chmod(locked, 0o555)
    run = cli(*extract_vit(split_folder, locked / "cache"), as_plain_user=plain_user)
    assert "--cache" in one_line_exit_2(run) and "not writable" in run.stderr
    cache = tmp_path / "cache"
    extract(TINY_VIT_MODEL(), f"folder:{split_folder}", config(cache))
    run = cli(
        "probe", "--cache", str(cache), "--results", str(locked / "res"), as_plain_user=plain_user
    )
    assert "--results" in one_line_exit_2(run) and "not writable" in run.stderr


def TINY_VIT_MODEL():
    from layerprobe.backbones import ModelConfig

    return ModelConfig(TINY_VIT, model_args=TINY_VIT_KWARGS)


def _bomb_png(path: Path, side: int = 30000) -> None:
    """A valid 1 x 1 PNG whose header claims side x side pixels (a decompression bomb)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", side, side)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def test_decompression_bomb_is_a_one_line_error_and_skip_bad_skips_it(image_folder, tmp_path):
    _bomb_png(image_folder / "class_a" / "img_99.png")
    args = [*extract_vit(image_folder, tmp_path / "c"), "--layers", "pre_logits", "--quiet"]
    err = one_line_exit_2(cli(*args))
    assert "img_99.png" in err and "decompression bomb" in err
    run = cli(*args, "--skip-bad")
    assert run.returncode == 0, run.stderr
    (info,) = find_caches(tmp_path / "c")
    assert info.num_rows == 30 and len(info.attrs["skipped_items"]) == 1


@pytest.fixture
def two_units(tiny_vit, split_folder, tmp_path):
    """A cache of two folder tasks (the same images under two names)."""
    other = tmp_path / "other"
    shutil.copytree(split_folder, other)
    cache = tmp_path / "cache"
    for task in (f"folder:{split_folder}", f"folder:{other}"):
        extract(tiny_vit, task, config(cache))
    return cache


def test_a_cache_missing_a_layer_dataset_is_named_and_skip_bad_skips_the_unit(two_units, tmp_path):
    damaged = sorted(two_units.rglob("train.h5"))[0]
    with h5py.File(damaged, "r+") as f:
        del f["features/blocks.2"]
    args = [
        "probe",
        "--cache",
        str(two_units),
        "--results",
        str(tmp_path / "r"),
        "--shots",
        "2",
        "--seeds",
        "1",
        "--quiet",
    ]
    err = one_line_exit_2(cli(*args))
    assert str(damaged) in err and "blocks.2 has no dataset" in err and "--force" in err
    assert cli(*args, "--skip-bad").returncode == 0
    assert len(set(results.load(tmp_path / "r").task)) == 1


def test_a_layer_with_fewer_rows_than_labels_names_the_file(two_units, tmp_path):
    damaged = sorted(two_units.rglob("test.h5"))[0]
    with h5py.File(damaged, "r+") as f:
        f["features/pre_logits"].resize(3, axis=0)
    err = one_line_exit_2(cli("probe", "--cache", str(two_units), "--results", str(tmp_path / "r")))
    assert str(damaged) in err and "pre_logits has 3 rows" in err


def test_non_numeric_format_version_and_misplaced_files(
    two_units, tiny_vit, split_folder, tmp_path
):
    path = sorted(two_units.rglob("val.h5"))[0]
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = "one"
    err = one_line_exit_2(cli("probe", "--cache", str(two_units), "--results", str(tmp_path / "r")))
    assert "format_version of 'one'" in err
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / tiny_vit.model_key()).write_text("a file where a model-key folder belongs")
    run = cli(*extract_vit(split_folder, blocked))
    assert "is a file, not a folder" in one_line_exit_2(run)
    assert "is a file" in one_line_exit_2(
        cli("probe", "--cache", str(path), "--results", str(tmp_path / "r"))
    )


def test_batch_size_beyond_indexing_is_a_one_line_error(split_folder, tmp_path):
    run = cli(*extract_vit(split_folder, tmp_path), "--batch-size", str(2**40))
    assert "batch size must be a whole number from 1 to" in one_line_exit_2(run)


# -- 5. messages that lead somewhere ------------------------------------------------------------
def test_nan_features_say_to_extract_again_with_force(two_units, tmp_path):
    path = sorted(two_units.rglob("train.h5"))[0]
    with h5py.File(path, "r+") as f:
        f["features/pre_logits"][0, 0] = np.nan
    run = cli("probe", "--cache", str(two_units), "--results", str(tmp_path / "r"), "--shots", "2")
    err = one_line_exit_2(run)
    assert "NaN" in err and "--force" in err and "Warning" not in err


def test_skip_bad_with_every_unit_bad_exits_non_zero(two_units, tmp_path):
    for path in two_units.rglob("train.h5"):
        with h5py.File(path, "r+") as f:
            f["features/pre_logits"][0, 0] = np.inf
    run = cli(
        "probe",
        "--cache",
        str(two_units),
        "--results",
        str(tmp_path / "r"),
        "--skip-bad",
        "--shots",
        "2",
    )
    assert run.returncode == 2 and "none of the 2 unit(s) could be probed" in run.stderr


def test_a_missing_test_split_does_not_suggest_what_the_task_lacks(tiny_vit, tmp_path):
    data = tmp_path / "data"
    for split in ("train", "val"):
        _write_class_folders(data / split, per_class=4, seed=len(split))
    extract(tiny_vit, f"folder:{data}", config(tmp_path / "cache"))
    err = one_line_exit_2(
        cli("probe", "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "r"))
    )
    assert "has no test split (it has train, val)" in err and "--split train,test" not in err


def test_show_filters_that_match_nothing_together_list_what_exists(two_units, tmp_path):
    store = tmp_path / "r"
    probe_cache(two_units, store, PROBE)
    task = sorted(set(results.load(store).task))[0]
    assert main(["results", "show", "--results", str(store), "--task", task, "--shots", "2"]) == 0
    run = cli("results", "show", "--results", str(store), "--task", task, "--model", "nope")
    assert "no results for model 'nope'" in one_line_exit_2(run)
    probe_cache(two_units, store, ProbeConfig(shots=[3], seeds=1, l2s=[1.0]), tasks=[task])
    other = sorted(set(results.load(store).task))[1]
    run = cli("results", "show", "--results", str(store), "--task", other, "--shots", "3")
    err = one_line_exit_2(run)
    assert "no results match these filters together" in err and "shots [2, 3]" in err
