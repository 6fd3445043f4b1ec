"""read_selected: only the selected-λ rows, only the columns asked for, newest re-run wins;
the selected-first part layout lets the scan skip the other rows."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from layerprobe.errors import DataError
from layerprobe.results import load, read_selected
from tests.results_data import probe_rows, write_store


def test_selected_rows_and_projection(tmp_path):
    rows = probe_rows(0.7, layer="blocks.0", depth=0.0) + probe_rows(0.8)
    table = read_selected(write_store(rows, tmp_path), columns=["test_accuracy"])
    assert len(table) == 4 and table["test_accuracy"].min() > 0  # the unselected rows have 0
    assert "val_accuracy" not in table.columns and "upstream_accuracy" not in table.columns
    assert isinstance(table["task"].dtype, pd.CategoricalDtype)
    only = read_selected(tmp_path, columns=["test_accuracy"], layers=["pre_logits"])
    assert set(only["layer"]) == {"pre_logits"} and len(only) == 2


def test_newest_rerun_wins_even_with_another_lambda(tmp_path):
    old = probe_rows(0.5, created_at=pd.Timestamp("2024-01-01", tz="UTC"))
    new = [
        dict(r, l2=r["l2"] * 8, test_accuracy=0.9 if r["selected"] else 0.0)
        for r in probe_rows(0.9)
    ]
    write_store(old, tmp_path / "a")
    write_store(new, tmp_path / "b")
    table = read_selected(tmp_path)
    assert len(table) == 2 and (table["test_accuracy"] == 0.9).all()


def test_parts_of_another_schema_version_are_refused(tmp_path):
    path = next(write_store(probe_rows(0.6), tmp_path).rglob("*.parquet"))
    table = pq.read_table(path)
    meta = dict(table.schema.metadata) | {b"layerprobe_schema_version": b"1"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(DataError, match="results schema 1"):
        read_selected(tmp_path)


def test_no_selected_rows_and_foreign_parts(tmp_path):
    rows = [dict(r, selected=False) for r in probe_rows(0.6)]
    with pytest.raises(DataError, match="selected"):
        read_selected(write_store(rows, tmp_path / "a"))
    (tmp_path / "b").mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "b" / "p.parquet")
    with pytest.raises(DataError, match="not written by"):
        read_selected(tmp_path / "b")


def test_selected_first_layout_puts_selected_rows_in_their_own_row_group(tmp_path):
    rows = pd.DataFrame(probe_rows(0.6, seeds=(0, 1, 2)))
    path = next(write_store(rows, tmp_path).rglob("*.parquet"))  # the store's own part writer
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 2
    column = pq.ParquetFile(path).schema_arrow.get_field_index("selected")
    stats = [meta.row_group(i).column(column).statistics for i in range(2)]
    assert (stats[0].min, stats[0].max) == (True, True) and (stats[1].min, stats[1].max) == (
        False,
        False,
    )
    assert len(load(tmp_path)) == len(rows)  # same rows for every reader
    assert len(read_selected(tmp_path)) == 3
