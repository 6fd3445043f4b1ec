"""Reading what the analysis needs from the store, and nothing more.

The analysis only looks at the λ chosen on validation (``selected == True``: one row in 30 with
the default grid) and at a dozen columns, so it reads the Parquet parts as one pyarrow dataset
with column projection and the ``selected`` filter pushed into the scan: the other rows are
decoded but never become Python objects, and text columns arrive as pandas categoricals (one
small integer per row). At the paper's scale (300 M rows) that is the difference between a few
hundred MB and tens of GB.

This is the one function the analysis reads tables through (``read_selected``); everything
downstream takes a DataFrame, so a table from ``layerprobe.results.load`` works as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from layerprobe.errors import DataError
from layerprobe.results.parts import check_version, read_metadata
from layerprobe.results.schema import PROBE_KEY as SCHEMA_PROBE_KEY
from layerprobe.results.schema import SCHEMA
from layerprobe.results.store import part_files

# The columns the analysis uses, with the types it reads them as (the schema's, knobs as
# floats). A part that lacks an optional column gets nulls there.
ANALYSIS_SCHEMA = pa.schema(
    [
        pa.field(name, pa.float64()) if name == "params" else SCHEMA.field(name)
        for name in SCHEMA.names
        if name not in ("k", "converged", "l2_select")
    ]
)
# Columns a part must have for the analysis to make sense of it.
NEEDED = ("model_key", "task", "layer", "depth", "shots", "seed", "test_accuracy", "selected")
# One probe result; a re-run's newer selected row replaces the older one.
PROBE_KEY = list(SCHEMA_PROBE_KEY)
TEXT = ("model", "model_key", "upstream_task", "task", "layer", "probe", "backend")


def read_selected(
    results_dir: str | Path,
    columns: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The selected-λ rows of the store below ``results_dir``.

    Parameters
    ----------
    results_dir : the results folder (Parquet part files below it, any depth).
    columns : the columns to read (default: every column of ``ANALYSIS_SCHEMA``); the probe key
        and ``created_at`` are always read so that re-runs can be de-duplicated.
    layers : only these layers (pushed into the scan like the ``selected`` filter).

    Returns
    -------
    DataFrame, one row per (model_key, task, layer, shots, seed, probe, backend); text columns as
    categoricals, missing optional columns as nulls.
    """
    files = part_files(results_dir)
    if not files:
        raise DataError(
            f"no results in {results_dir} (no .parquet part files); run "
            f"`layerprobe probe --cache CACHE --results {results_dir}` first"
        )
    check_version(files[0], read_metadata(files[0])[0])  # every part: `layerprobe results show`
    first = _schema(files[0])
    missing = [c for c in NEEDED if c not in first.names]
    if missing:
        raise DataError(
            f"results part {files[0]} has no {', '.join(missing)} column; it was not written by "
            "`layerprobe probe` (or by an older version): move it out or re-run the probe"
        )
    want = list(dict.fromkeys([*(columns or ANALYSIS_SCHEMA.names), *PROBE_KEY, "created_at"]))
    extra = [c for c in want if c not in ANALYSIS_SCHEMA.names]
    if extra:
        raise ValueError(f"read_selected: unknown column(s) {extra}")
    schema = pa.schema([ANALYSIS_SCHEMA.field(c) for c in want if c != "selected"])
    # An explicit schema: every part is cast to it, and absent columns read as nulls.
    dataset = ds.dataset([str(f) for f in files], format="parquet", schema=_with_selected(schema))
    keep = ds.field("selected") == True  # noqa: E712
    if layers:
        keep = keep & ds.field("layer").isin(list(layers))
    try:
        table = dataset.to_table(columns=schema.names, filter=keep)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
        raise DataError(
            f"cannot read the results in {results_dir} ({type(err).__name__}: {err}); "
            "find the bad part with `layerprobe results show --results DIR`"
        ) from err
    table = _categorical(table)
    frame = table.to_pandas()
    if frame.empty and not layers:
        raise DataError(
            f"no rows of {results_dir} have selected == true (the λ chosen on validation); "
            "re-run `layerprobe probe` to write them"
        )
    if frame.empty:
        return frame
    return _newest(frame)


def _schema(path: Path) -> pa.Schema:
    try:
        return ds.dataset(str(path), format="parquet").schema
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"cannot read results part {path} ({err}); delete it and re-run") from err


def _with_selected(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("selected", pa.bool_()))


def _categorical(table: pa.Table) -> pa.Table:
    """Text columns as dictionaries: pandas gets categoricals instead of one object per row."""
    for name in TEXT:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, table[name].dictionary_encode())
    return table


def _newest(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the newest row of each probe result (a re-run may have chosen another λ)."""
    key = [c for c in PROBE_KEY if c in frame.columns]
    if frame.duplicated(key).any():
        frame = frame.sort_values("created_at", kind="stable")
        frame = frame.drop_duplicates(key, keep="last")
    return frame.reset_index(drop=True)
