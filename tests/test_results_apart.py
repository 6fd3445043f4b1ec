"""The analysis reads at the paper's scale without pandas' grouping: a checkpoint's numbers read
once per checkpoint (`read_selected_apart`), seed means grouped on one code per row, each key's
first values found from runs, text columns renumbered instead of re-encoded — each giving what
the plain pandas computation gives, on stores the real writer wrote."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

from layerprobe.analysis.fit import READ_COLUMNS, fit_store
from layerprobe.analysis.layersat import chance_levels
from layerprobe.analysis.points import GROUP, as_text, seed_means, with_upstream_task
from layerprobe.analysis.report import REPORT_COLUMNS, write_report
from layerprobe.results.frames import first_values
from layerprobe.results.parts import write_part
from layerprobe.results.read import CHECKPOINT_NUMBERS, read_selected, read_selected_apart
from layerprobe.results.store import _encoded
from tests.results_data import write_store
from tests.test_results_rowcache import rows_of, settle


def knob_store(folder):
    """Checkpoints whose numbers repeat across neighbours (one run spanning checkpoints), with a
    missing US accuracy on a checkpoint's first task only, and one checkpoint with no knobs."""
    rows = []
    for m in range(5):
        for t, task in enumerate(("alpha", "beta", "gamma")):
            values = dict(upstream_accuracy=0.4 + m / 10, head_wd=(0.0, 0.1)[m // 3], epochs=10.0)
            if m == 2 and t == 0:
                values["upstream_accuracy"] = np.nan  # its first value comes from `beta`
            if m == 4:
                values |= dict(head_wd=np.nan, head_lr=np.nan, params=None)
            rows += rows_of(f"m{m}", task, 0.5 + 0.05 * m + 0.02 * t, **values)
    write_store(rows, folder)
    return folder


def full_read(folder, columns, **kw):
    """(rows, checkpoints) the plain way: everything on every row, then the distinct rows."""
    apart = [c for c in CHECKPOINT_NUMBERS if c not in columns]
    table = read_selected(folder, [*columns, *apart], **kw)
    distinct = table[["model_key", *apart]].drop_duplicates().reset_index(drop=True)
    distinct["model_key"] = distinct["model_key"].astype(str)
    return table.drop(columns=apart), distinct


@pytest.mark.parametrize("layers", [None, ["pre_logits"]])
@pytest.mark.parametrize("other", ["superseded", "tied", "superseded first"])
def test_apart_reads_the_rows_and_distinct_numbers_of_a_full_read(tmp_path, layers, other):
    folder = knob_store(tmp_path / "s")
    # Beside the newest part of m1/gamma, one with other numbers: of an older generation (never
    # served), or of the same one (its rows are served once each, the newest part's row kept).
    # Or an older part of m0/alpha with m0's numbers, read first: m0's first served row is then
    # in the middle of a run of equal numbers.
    when = pd.Timestamp("2025-01-01" if other == "tied" else "2024-01-01", tz="UTC")
    model, task, us, where = ("m1", "gamma", 0.99, "other")
    if other == "superseded first":
        model, task, us, where = ("m0", "alpha", 0.4, "a-old")
    extra = pd.DataFrame(rows_of(model, task, 0.1, upstream_accuracy=us, created_at=when))
    extra = extra.assign(head_wd=0.0, epochs=10.0)
    write_part(
        extra.astype({"k": "Int64", "converged": "boolean", "params": "Int64"}),
        folder / where,
        {"model_key": model, "task": task, "probe": "ridge", "cache": other},
    )
    columns = [c for c in READ_COLUMNS if c not in CHECKPOINT_NUMBERS]
    want_rows, want_combos = full_read(folder, columns, layers=layers, row_cache=False)
    first_us = want_combos.groupby("model_key", sort=False)["upstream_accuracy"].first()
    assert first_us["m2"] == pytest.approx(0.6)  # its first task has none
    assert first_us["m1"] == pytest.approx(0.5)  # m1/alpha's, before any of m1/gamma's
    for row_cache in (False, True, True):  # direct, cache built, cache served
        rows, combos = read_selected_apart(folder, columns, layers, row_cache=row_cache)
        assert_frame_equal(rows, want_rows)
        assert_frame_equal(combos, want_combos)
        assert not set(CHECKPOINT_NUMBERS) & set(rows.columns)
        settle()


def test_fit_reads_apart_and_fits_what_a_full_read_fits(tmp_path):
    from layerprobe.analysis.fit import fit_saturation

    folder = knob_store(tmp_path / "s")
    fits = fit_store(folder, layer="best")
    whole = fit_saturation(read_selected(folder, list(READ_COLUMNS)), layer="best")
    assert_frame_equal(fits, whole)
    assert len(fits) == 3


def test_a_table_read_apart_is_split_after_it_is_read(tmp_path):
    folder = knob_store(tmp_path / "s")
    table = read_selected(folder, row_cache=False)
    us = table.groupby("model_key", observed=True)["upstream_accuracy"].transform("max")
    table["upstream_accuracy"] = us  # a published table has every row's
    path = tmp_path / "published.csv"
    table[
        [
            *"model model_key upstream_accuracy head_wd task layer depth shots seed test_accuracy".split()
        ]
    ].assign(test_accuracy=table["test_accuracy"].round(3)).to_csv(path, index=False)
    rows, combos = read_selected_apart(path, ["model_key", "task", "test_accuracy"])
    assert "upstream_accuracy" not in rows.columns and len(rows) == len(table)
    assert combos["model_key"].tolist() == [f"m{m}" for m in range(5)]


def test_first_values_are_pandas_first(tmp_path):
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(1, 400))
        runs = rng.integers(0, 6, size=int(rng.integers(1, 30)))  # keys in runs, keys recur
        key = np.resize(np.repeat(runs, rng.integers(1, 30, size=len(runs))), n)
        if trial % 3 == 0:
            key = rng.permutation(key)
        frame = pd.DataFrame(
            {
                "k": pd.Categorical(np.char.add("m", key.astype(str))),
                "x": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 3, n).astype(float)),
                "y": rng.random(n),
                "z": pd.Categorical(np.where(rng.random(n) < 0.5, None, "a")),
            }
        )
        want = frame.groupby("k", observed=True, sort=False)[["x", "y", "z"]].first()
        assert_frame_equal(first_values(frame["k"], frame[["x", "y", "z"]]), want.reset_index())


def test_seed_means_are_the_multi_key_groupby(tmp_path):
    folder = knob_store(tmp_path / "s")
    table = read_selected(folder)
    table = table.iloc[np.random.default_rng(1).permutation(len(table))]  # no runs at all
    plain = with_upstream_task(table)
    keys = ["model_key", *GROUP, "layer"]
    want = (
        plain.groupby(keys, observed=True, sort=False)
        .agg(
            depth=("depth", "first"),
            accuracy=("test_accuracy", "mean"),
            std=("test_accuracy", "std"),
            seeds=("test_accuracy", "count"),
        )
        .reset_index()
    )
    want["se"] = (want.pop("std") / np.sqrt(want["seeds"])).fillna(0.0)
    for col in ("model_key", "task", "layer", "probe"):
        want[col] = as_text(want[col])
    assert_frame_equal(seed_means(table), want)


def test_text_read_as_dictionaries_keeps_the_values_present_in_order_of_first_use():
    chunks = [
        pa.DictionaryArray.from_arrays(pa.array([2, 2, 0], pa.int32()), ["a", "b", "c"]),
        pa.DictionaryArray.from_arrays(pa.array([1, 3], pa.int8()), ["x", "a", "y", "c"]),
    ]
    column = pa.chunked_array([c.cast(pa.dictionary(pa.int32(), pa.string())) for c in chunks])
    want = column.cast(pa.string()).dictionary_encode()
    got = _encoded(column)
    assert got.combine_chunks().dictionary.to_pylist() == ["c", "a"]
    assert got.to_pylist() == want.to_pylist()
    assert_frame_equal(  # the same categorical: values, categories in the same order
        pa.table({"c": got}).to_pandas(), pa.table({"c": want}).to_pandas()
    )
    with_null = pa.chunked_array([pa.array(["b", None, "a"]).dictionary_encode()])
    assert _encoded(with_null).to_pylist() == ["b", None, "a"]


def test_a_report_read_apart_is_the_report_of_a_full_read(tmp_path):
    folder = knob_store(tmp_path / "s")
    apart = write_report(folder, tmp_path / "apart", bootstrap=0)
    whole = write_report(
        folder, tmp_path / "whole", table=read_selected(folder, list(REPORT_COLUMNS)), bootstrap=0
    )
    for name in ("fits.parquet", "layers.parquet"):
        assert (apart.parent / name).read_bytes() == (whole.parent / name).read_bytes()
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
    page = [stamp.sub("", p.read_text()) for p in (apart, whole)]
    assert page[0] == page[1]
    assert "US accuracy 0.400–0.800" in page[0]  # the checkpoints' numbers reached the summary


def plain_chance_levels(table: pd.DataFrame) -> pd.DataFrame:
    """chance_levels as every row's values grouped by pandas (the reference)."""
    cols = [c for c in ("task", "shots", "n_train", "n_test") if c in table.columns]
    frame = table[cols].copy()
    frame["task"] = as_text(frame["task"])
    for col in ("n_train", "n_test"):
        frame[col] = frame[col].astype(float) if col in frame.columns else np.nan
    shots = frame["shots"].astype(float)
    chance = shots / frame["n_train"].where(frame["n_train"] > 0)
    frame["chance"] = np.where(shots > 0, chance, np.nan)
    grouped = frame.groupby(["task", "shots"], observed=True, sort=True)
    return grouped.agg(chance=("chance", "median"), n_test=("n_test", "median")).reset_index()


def test_chance_levels_from_distinct_rows_are_the_medians_of_every_row():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 300))
        table = pd.DataFrame(
            {
                "task": pd.Categorical(rng.choice(["b", "a", "c", "dd"], n)),
                "shots": rng.choice([0, 1, 5, 25], n).astype(np.int64),
                "n_train": rng.choice([0, 7, 50, 125, 10, 33], n).astype(np.int64),
                "n_test": rng.choice([100.0, 200.0, 333.0, np.nan, 1e-3, 7.1], n),
            }
        )
        if trial % 5 == 0:
            table = table.drop(columns=["n_test"])
        if trial % 7 == 0:
            table["n_train"] = table["n_train"].astype(float).where(rng.random(n) > 0.3)
        assert_frame_equal(chance_levels(table), plain_chance_levels(table), check_exact=True)
