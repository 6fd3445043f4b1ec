"""`layerprobe probe --probe ridge,logistic,knn`: the families on the same cache, one store."""

from __future__ import annotations

import numpy as np
import pytest

import layerprobe.results as results
from layerprobe.cli import main
from layerprobe.extract import read_arrays
from layerprobe.probe import ProbeConfig, knn_accuracy, logistic_accuracy, probe_cache
from tests.cachefiles import write_task


@pytest.fixture
def cache(tmp_path):
    paths = write_task(tmp_path / "cache", rows={"train": 40, "val": 10, "test": 20})
    return tmp_path / "cache", paths


def probe(tmp_path, cache_dir, *args) -> int:
    return main(
        [
            "probe",
            "--cache",
            str(cache_dir),
            "--results",
            str(tmp_path / "r"),
            "--shots",
            "0",
            "--quiet",
            *args,
        ]
    )


def test_every_family_writes_its_rows_beside_the_others(tmp_path, cache, capsys):
    cache_dir, paths = cache
    assert (
        probe(tmp_path, cache_dir, "--probe", "ridge,logistic,knn,knn_weighted", "--k", "5,10") == 0
    )
    table = results.load(tmp_path / "r")
    assert set(table.probe) == {"ridge", "logistic", "knn", "knn_weighted"}
    knn = table[table.probe == "knn"]
    assert knn.l2.isna().all() and set(knn.k) == {5, 10}
    logistic = table[table.probe == "logistic"]
    assert logistic.k.isna().all() and logistic.converged.astype(bool).all()
    assert table[table.probe == "ridge"].converged.isna().all()
    chosen = table[table.selected]
    assert (chosen.groupby(["probe", "layer"]).size() == 1).all()  # one choice per probe
    # The rows are the engines' numbers on the cached features (λ / k chosen on val).
    (y_tr, _, x_tr), (y_te, _, x_te) = (read_arrays(paths[s]) for s in ("train", "test"))
    layer = "pre_logits"
    row = chosen[(chosen.probe == "knn") & (chosen.layer == layer)].iloc[0]
    direct = knn_accuracy(x_tr[layer], y_tr, x_te[layer], y_te, ks=[int(row.k)])
    assert row.test_accuracy == pytest.approx(float(direct[0]))
    row = chosen[(chosen.probe == "logistic") & (chosen.layer == layer)].iloc[0]
    direct = logistic_accuracy(x_tr[layer], y_tr, x_te[layer], y_te, l2s=[row.l2])
    assert row.test_accuracy == pytest.approx(float(direct[0]), abs=1 / len(y_te))
    assert main(["results", "show", "--results", str(tmp_path / "r")]) == 0
    shown = capsys.readouterr().out
    assert all(f"; {family}, " in shown for family in ("ridge", "logistic", "knn", "knn_weighted"))


def test_family_errors_are_one_line(tmp_path, cache, capsys):
    cache_dir, _ = cache
    assert probe(tmp_path, cache_dir, "--probe", "lasso") == 2
    assert "unknown probe family 'lasso'" in capsys.readouterr().err
    assert probe(tmp_path, cache_dir, "--probe", "knn", "--k", "500") == 2
    err = capsys.readouterr().err.strip()
    assert "k = 500 is larger than a train set" in err and "\n" not in err
    assert probe(tmp_path, cache_dir, "--probe", "knn", "--l2-select", "fixed:1") == 2
    assert "applies to ridge and logistic" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.parquet"))


def test_families_from_python_share_the_unit_and_validation_rule(tmp_path, cache):
    cache_dir, _ = cache
    for family in ("ridge", "logistic"):
        probe_cache(cache_dir, tmp_path / "py", ProbeConfig(shots=[5], seeds=2, probe=family))
    table = results.load(tmp_path / "py")
    assert len(list((tmp_path / "py").rglob("*.parquet"))) == 2  # a part per family
    by = table[table.selected].groupby("probe")
    assert set(by.size()) == {3 * 2}  # 3 layers × 2 seeds each
    assert np.isfinite(table.test_accuracy).all()
