"""`layerprobe probe` end to end on caches written by the test helper, and its bad inputs."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from cachefiles import write_cache_file, write_task

from layerprobe.cli import main
from layerprobe.extract.cache import cache_path
from layerprobe.results.schema import COLUMNS

L2 = "2**-10,1,2**10"
FAST = ["--shots", "1,5,0", "--seeds", "2", "--l2", L2, "--quiet"]


def probe(tmp_path, *extra) -> int:
    return main(
        [
            "probe",
            "--cache",
            str(tmp_path / "cache"),
            "--results",
            str(tmp_path / "res"),
            *FAST,
            *extra,
        ]
    )


def parts(tmp_path) -> list:
    return sorted((tmp_path / "res").rglob("*.parquet"))


@pytest.fixture
def cache(tmp_path):
    write_task(
        tmp_path / "cache",
        pretrain={"params": 5_000_000, "head_wd": 0.1, "upstream_accuracy": 0.71},
    )
    write_task(tmp_path / "cache", task="builtin/shapes", rows={"train": 30, "val": 6, "test": 12})
    return tmp_path / "cache"


def test_probe_writes_one_part_per_unit_with_the_store_columns(tmp_path, cache):
    assert probe(tmp_path) == 0
    files = parts(tmp_path)
    assert len(files) == 2
    table = pd.concat([pq.read_table(f).to_pandas() for f in files])
    assert list(table.columns) == COLUMNS
    # 3 layers × (2 seeds × {1, 5} shots + 1 full probe) × 3 λ per task
    assert len(table) == 2 * 3 * 5 * 3
    toy = table[table.task == "toy"]
    assert set(toy.model_key) == {"toy-0123456789ab"} and set(toy.model) == {"timm:toy"}
    assert (
        (toy.params == 5_000_000).all() and (toy.head_wd == 0.1).all() and toy.head_lr.isna().all()
    )
    assert (toy.upstream_accuracy == 0.71).all()
    assert set(toy.n_train) == {3, 15, 3 * 24}  # 1 and 5 shots × 3 classes; full = 30 - 6 held out
    assert set(toy.n_test) == {30}
    assert set(table.l2) == {2.0**-10, 1.0, 2.0**10}
    one_per_probe = table.groupby(["task", "layer", "shots", "seed"])["selected"].sum()
    assert (one_per_probe == 1).all()
    assert set(table.depth) == {0.0, 0.5, 1.0}
    assert table.test_accuracy.between(0, 1).all() and table.val_accuracy.between(0, 1).all()
    # The helper's layers get more separable with depth: the last layer beats chance clearly.
    chosen = table[table.selected & (table.shots == 0)]
    assert chosen.test_accuracy.max() > 0.6


def test_rerun_skips_done_units_and_force_rewrites(tmp_path, cache):
    assert probe(tmp_path) == 0
    first = {f: pq.read_table(f).to_pandas().created_at.iloc[0] for f in parts(tmp_path)}
    assert probe(tmp_path) == 0
    assert {f: pq.read_table(f).to_pandas().created_at.iloc[0] for f in parts(tmp_path)} == first
    assert probe(tmp_path, "--force", "--task", "toy") == 0
    after = {f: pq.read_table(f).to_pandas().created_at.iloc[0] for f in parts(tmp_path)}
    changed = [f for f in after if after[f] != first[f]]
    assert len(changed) == 1 and "toy." in changed[0].name


def test_re_extracted_features_are_probed_again_not_skipped(tmp_path, cache):
    assert probe(tmp_path, "--task", "toy") == 0
    (first,) = parts(tmp_path)
    # The same model key re-extracted with one more layer (as `extract` does for new layers).
    widths = {"blocks.0": 8, "blocks.1": 8, "blocks.2": 8, "pre_logits": 6}
    write_task(cache, widths=widths)
    assert probe(tmp_path, "--task", "toy") == 0
    newest = max(parts(tmp_path), key=lambda f: f.stat().st_mtime_ns)
    assert newest != first
    assert "blocks.2" in set(pq.read_table(newest).to_pandas().layer)


def test_layers_and_model_key_filters(tmp_path, cache):
    write_task(cache, model_key="other-key", task="toy")
    assert probe(tmp_path, "--model-key", "other-key", "--layers", "blocks.*") == 0
    table = pd.concat([pq.read_table(f).to_pandas() for f in parts(tmp_path)])
    assert set(table.model_key) == {"other-key"} and set(table.layer) == {"blocks.0", "blocks.1"}


def test_results_match_the_python_api(tmp_path, cache):
    from layerprobe.extract.cache import read_arrays
    from layerprobe.probe import ridge_accuracy

    assert probe(tmp_path, "--task", "builtin/shapes") == 0
    table = pq.read_table(parts(tmp_path)[0]).to_pandas()
    row = table[(table.layer == "pre_logits") & (table.shots == 0) & (table.l2 == 1.0)].iloc[0]
    ytr, _, ftr = read_arrays(
        cache_path(cache, "toy-0123456789ab", "builtin/shapes", split="train")
    )
    yte, _, fte = read_arrays(cache_path(cache, "toy-0123456789ab", "builtin/shapes", split="test"))
    expected = ridge_accuracy(ftr["pre_logits"], ytr, fte["pre_logits"], yte, l2s=[1.0])[0]
    assert row.test_accuracy == pytest.approx(expected)


def poison(path, layer: str, at: tuple[int, int], value: float) -> None:
    """Overwrite one feature value of a cache file (a NaN or inf as a broken model would give)."""
    with h5py.File(path, "r+") as f:
        data = f[f"features/{layer}"][()]
        data[at] = value
        f[f"features/{layer}"][...] = data


def run_error(tmp_path, capsys, *extra) -> str:
    assert probe(tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("layerprobe: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_incomplete_and_foreign_cache_files(tmp_path, cache, capsys):
    path = cache_path(cache, "toy-0123456789ab", "toy", split="test")
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    assert "not complete" in run_error(tmp_path, capsys)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    assert "not a layerprobe feature cache" in run_error(tmp_path, capsys)
    # --skip-bad reports the file and probes the other task; nothing else is lost.
    assert probe(tmp_path, "--skip-bad") == 0
    assert "skipping" in capsys.readouterr().err
    assert [p.name.split(".")[0] for p in parts(tmp_path)] == ["builtin__shapes"]


def test_nan_features_name_the_layer_and_row(tmp_path, cache, capsys):
    poison(cache_path(cache, "toy-0123456789ab", "toy", split="test"), "blocks.1", (4, 1), np.inf)
    err = run_error(tmp_path, capsys, "--task", "toy")
    assert "blocks.1" in err and "row 4" in err


def test_train_and_test_widths_differ(tmp_path, capsys):
    labels = np.repeat([0, 1], 10)
    root = tmp_path / "cache"
    for split, width in (("train", 4), ("test", 3)):
        features = {"f": np.ones((20, width))}
        path = cache_path(root, "k", "t", split=split)
        write_cache_file(path, features, labels, model_key="k", task="t", split=split)
    err = run_error(tmp_path, capsys)
    assert "4 wide in train but 3 in test" in err


def test_single_class_and_too_many_shots(tmp_path, capsys):
    root = tmp_path / "cache"
    write_task(root, task="one", num_classes=1)
    assert "single class" in run_error(tmp_path, capsys)
    root_two = tmp_path / "two"
    write_task(root_two, task="few", rows={"train": 4, "test": 3})
    assert (
        main(
            [
                "probe",
                "--cache",
                str(root_two),
                "--results",
                str(tmp_path / "r2"),
                "--shots",
                "5",
                "-q",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "fewer than 5 shots" in err and "holding out" in err


def test_unknown_names_and_missing_cache(tmp_path, cache, capsys):
    assert "did you mean" in run_error(tmp_path, capsys, "--task", "toyy").lower()
    assert "Model keys there: toy-0123456789ab" in run_error(
        tmp_path, capsys, "--model-key", "nope"
    )
    assert "no layer" in run_error(tmp_path, capsys, "--layers", "blocks.9")
    assert "sklearn" in run_error(tmp_path, capsys, "--backend", "sklern")
    assert main(["probe", "--cache", str(tmp_path / "none"), "--results", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_error_keeps_units_already_written(tmp_path, cache, capsys):
    # 'toy' is probed after 'builtin/shapes'
    poison(
        cache_path(cache, "toy-0123456789ab", "toy", split="train"), "pre_logits", (0, 0), np.nan
    )
    run_error(tmp_path, capsys)
    assert [p.name.split(".")[0] for p in parts(tmp_path)] == ["builtin__shapes"]


def test_probe_cache_from_python(tmp_path, cache):
    from layerprobe.probe import ProbeConfig, probe_cache
    from layerprobe.results import load

    config = ProbeConfig(shots=[5], seeds=1, l2s=[1.0])
    summary = probe_cache(cache, tmp_path / "py", config, tasks=["toy"])
    assert len(summary.written) == 1 and summary.skipped == []
    table = load(tmp_path / "py")
    assert set(table.task) == {"toy"} and len(table) == 3 and table.selected.all()
    assert probe_cache(cache, tmp_path / "py", config, tasks=["toy"]).skipped


def test_results_path_through_a_file_fails_before_probing(tmp_path, cache, capsys):
    (tmp_path / "res").write_text("not a folder")
    assert "is a file, not a folder" in run_error(tmp_path, capsys)
    assert (tmp_path / "res").read_text() == "not a folder"


def test_bad_shots_syntax_is_one_line_exit_2(tmp_path, cache, capsys):
    with pytest.raises(SystemExit) as exit_info:
        probe(tmp_path, "--shots", "a,b")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("layerprobe: error: argument --shots") and "\n" not in err
    assert not parts(tmp_path)


def test_folder_task_without_split_folders_says_how_to_split(tmp_path, capsys):
    write_task(tmp_path / "cache", task="folder:/data/flat", rows={"all": 12})
    assert "train/ and test/ sub-folders" in run_error(tmp_path, capsys)


def test_a_broken_file_of_another_task_does_not_stop_task_filter(tmp_path, cache, capsys):
    broken = cache_path(cache, "toy-0123456789ab", "toy", split="train")
    broken.write_bytes(b"not hdf5")
    assert probe(tmp_path, "--task", "builtin/shapes") == 0
    assert [p.name.split(".")[0] for p in parts(tmp_path)] == ["builtin__shapes"]
    assert "cannot read cache file" in run_error(tmp_path, capsys, "--task", "toy")


def test_a_damaged_chunk_is_the_cache_readers_one_line(tmp_path, cache, capsys):
    """A file whose attributes and shapes read fine but whose features do not (a compressed
    chunk damaged on disk, found only when the probe reads the layer) stops the run with the
    one reader's line: the file, h5py's reason, and what to do."""
    path = cache_path(cache, "toy-0123456789ab", "toy", split="test")
    with h5py.File(path, "r+") as f:  # the layer stored gzip-compressed, as h5repack may leave it
        data = f["features/blocks.1"][()]
        del f["features/blocks.1"]
        dset = f.create_dataset(
            "features/blocks.1", data=data, chunks=data.shape, compression="gzip"
        )
        chunk = dset.id.get_chunk_info(0)
    with open(path, "r+b") as raw:
        raw.seek(chunk.byte_offset)
        raw.write(b"\xff" * chunk.size)
    err = run_error(tmp_path, capsys, "--task", "toy")
    assert err.startswith(f"layerprobe: error: cannot read cache file {path}: ")
    assert err.endswith("; delete it and extract again")
    assert parts(tmp_path) == []
