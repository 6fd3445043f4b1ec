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


def _straightforward(folder, columns, layers=None):
    """The selected rows the plain way: every part read whole with pandas, filtered after."""
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))
    frame = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    frame = frame[frame["selected"].fillna(False).astype(bool)]
    if layers:
        frame = frame[frame["layer"].isin(layers)]
    return frame


def test_one_pass_reader_gives_the_rows_of_a_plain_read(tmp_path, monkeypatch):
    """The reader (each part validated and read in one pass, on threads, in batches of parts)
    serves the rows a plain pandas read of every part serves: mixed layouts (selected rows in
    their own row group, or one row group), a part without the optional columns, batches
    smaller than the parts, and a superseded generation beside its re-run."""
    import layerprobe.results.store as store

    monkeypatch.setattr(store, "BATCH", 5)  # several batches out of 40 parts
    rows = []
    for m in range(8):
        for t in range(5):
            for layer, depth in (("blocks.0", 0.0), ("pre_logits", 1.0)):
                rows += probe_rows(
                    0.3 + 0.01 * m + 0.05 * t + 0.1 * depth,
                    seeds=(0, 1, 2),
                    spread=0.02,
                    model_key=f"m{m}",
                    task=f"t{t}",
                    layer=layer,
                    depth=depth,
                    upstream_accuracy=0.5 + 0.01 * m,
                )
    folder = write_store(rows, tmp_path / "store")
    files = sorted(folder.rglob("*.parquet"))
    assert len(files) == 40
    plain = pq.read_table(files[3])  # rewritten in one row group, unselected rows first
    order = plain["selected"].to_numpy(zero_copy_only=False).argsort(kind="stable")
    pq.write_table(plain.take(order), files[3])
    lean = pq.read_table(files[7])  # without the optional params, k and converged columns
    pq.write_table(lean.drop_columns(["params", "k", "converged"]), files[7])
    # A superseded generation of one unit (other seeds, older): never served.
    old = probe_rows(
        0.99, seeds=(7,), model_key="m0", task="t0", created_at=pd.Timestamp("2024-01-01", tz="UTC")
    )
    write_store(old, tmp_path / "old")
    old_part = next((tmp_path / "old").rglob("*.parquet"))
    (folder / "m0" / "extra").mkdir()
    old_part.rename(folder / "m0" / "extra" / old_part.name)

    columns = ["model_key", "task", "layer", "shots", "seed", "test_accuracy", "params"]
    key = ["model_key", "task", "layer", "shots", "seed"]
    for layers in (None, ["pre_logits"]):
        fast = read_selected(folder, columns=columns, layers=layers)
        slow = _straightforward(folder, columns, layers)
        slow = slow[slow["seed"] != 7]  # the superseded part's rows
        assert len(fast) == len(slow) == 8 * 5 * 3 * (1 if layers else 2)
        fast = fast[columns].astype({c: str for c in ("model_key", "task", "layer")})
        slow = slow[columns].astype({c: str for c in ("model_key", "task", "layer")})
        slow = slow.astype({"params": float})
        assert slow["params"].isna().sum() == fast["params"].isna().sum() > 0
        # In the same order too: file by file, as the parts are listed.
        pd.testing.assert_frame_equal(fast, slow.reset_index(drop=True), check_dtype=False)
        assert not fast.duplicated(key).any()
        assert isinstance(read_selected(folder, layers=layers)["task"].dtype, pd.CategoricalDtype)
    # Every row of every part, too, through the same pass (load: all rows, all columns).
    every = load(folder)
    assert len(every) == len(rows)
    assert set(every.columns) >= {"k", "converged"} and every["k"].isna().all()
    assert every["params"].isna().sum() == len(pq.read_table(files[7]))
