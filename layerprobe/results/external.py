"""External tables: a published table of US / DS accuracies read as if it were a results store.

``--results TABLE.csv`` or ``--results TABLE.parquet`` (a file instead of a folder) reaches this
module through the store's one reader (:func:`layerprobe.results.store.read`), so ``fit``,
``report``, ``results show`` and ``results knobs`` analyse a paper's or a model zoo's table with
exactly the method they apply to layerprobe's own store.

The table needs the columns ``model``, ``upstream_accuracy``, ``task`` and ``test_accuracy``
(accuracies as fractions in [0, 1]). Every other column of the results schema is optional and
gets a default (:data:`DEFAULTS`): one checkpoint per ``model`` (``model_key`` = ``model``),
``layer`` = ``pre_logits`` at ``depth`` 1, ``shots`` 0, ``seed`` 0, ``selected`` true, probe
``table``. Columns the schema does not know (an architecture family, a pre-training seed) are
kept, so ``--group-by family`` and ``results knobs --match family`` can use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from layerprobe.errors import ConfigError, DataError
from layerprobe.results.schema import (
    COLUMNS,
    KNOBS,
    PRETRAIN_IDENTITY,
    ROW_KEY,
    SCHEMA_VERSION,
)

SUFFIXES = (".csv", ".parquet", ".pq")
REQUIRED = ("model", "upstream_accuracy", "task", "test_accuracy")
ACCURACY_COLUMNS = ("upstream_accuracy", "test_accuracy", "val_accuracy")
# Defaults of the optional schema columns (model_key: the model; created_at: the file's mtime).
DEFAULTS = {
    "upstream_task": "",
    "layer": "pre_logits",
    "depth": 1.0,
    "shots": 0,
    "seed": 0,
    "probe": "table",
    "l2_select": "external",
    "backend": "external",
    "config": "",
    "selected": True,
}
TEXT_COLUMNS = (
    "model",
    "model_key",
    "upstream_task",
    "task",
    "layer",
    "probe",
    "l2_select",
    "backend",
    "config",
)
INTEGER_COLUMNS = ("shots", "seed")
FLOAT_COLUMNS = (
    "upstream_accuracy",
    *KNOBS,
    "depth",
    "l2",
    "k",
    "val_accuracy",
    "test_accuracy",
    "n_train",
    "n_test",
)


def is_table(path: str | Path) -> bool:
    """Whether ``--results path`` names a table (a file, or a ``.csv``/``.parquet`` name) rather
    than a results folder."""
    path = Path(path)
    if path.is_dir():
        return False
    return path.is_file() or path.suffix.lower() in SUFFIXES


def read_table(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    selected_only: bool = False,
    layers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The rows of an external table, with every column of the results schema.

    Parameters
    ----------
    path : a ``.csv`` or ``.parquet`` file with at least :data:`REQUIRED` columns.
    columns : the columns wanted (default: the schema's, then the table's own extra columns);
        a name that is neither in the schema nor in the table is a :class:`ConfigError`.
    selected_only : only the rows with ``selected`` true (every row, unless the table has a
        ``selected`` column).
    layers : only these layers.

    Returns
    -------
    DataFrame, one row per table row (of the selected layers): the schema's columns with the
    defaults of :data:`DEFAULTS` where the table has none, then the table's extra columns.
    Accuracies are fractions in [0, 1]; ``params`` is a float.

    Raises
    ------
    DataError : the file is missing or unreadable, lacks a required column, holds accuracies in
        percent, outside [0, 1] or not finite, non-numeric values where numbers belong, or two
        rows for one result.
    """
    frame = complete(load_table(path), path)
    if selected_only:
        frame = frame[frame["selected"]]
    if layers:
        frame = frame[frame["layer"].isin(list(layers))]
    extra = [c for c in frame.columns if c not in COLUMNS]
    want = list(columns) if columns is not None else [*COLUMNS, *extra]
    unknown = [c for c in want if c not in frame.columns]
    if unknown:
        raise ConfigError(
            f"results table {path} has no column(s) {', '.join(unknown)}; it has "
            f"{', '.join(map(str, frame.columns))}"
        )
    want = list(dict.fromkeys(want))
    return frame[want].reset_index(drop=True)


def extra_columns(path: str | Path) -> list[str]:
    """The table's own columns that the results schema does not have (e.g. a family column)."""
    return [c for c in load_table(path).columns if c not in COLUMNS]


def load_table(path: str | Path) -> pd.DataFrame:
    """The file as it is (no defaults, no checks but readability)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"results table {path} does not exist; give --results an existing .csv or .parquet "
            "table, or a results folder"
        )
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"--results {path} is a file but not a .csv or .parquet table; give a results "
            "folder or a table ending in .csv or .parquet"
        )
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            frame = pd.read_parquet(path)
    except Exception as err:  # any parser error is the file's fault
        message = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise DataError(
            f"--results {path} is a file that cannot be read as a {kind} table "
            f"({type(err).__name__}: {message}); give a valid {kind} table with columns "
            f"{', '.join(REQUIRED)}, or a results folder"
        ) from err
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.columns.duplicated().any():
        twice = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise DataError(f"results table {path} has column(s) {', '.join(twice)} twice; rename one")
    return frame


def complete(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """``frame`` checked and completed to the results schema (see :func:`read_table`)."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(
            f"results table {path} lacks the required column(s) {', '.join(missing)}; a table "
            f"needs {', '.join(REQUIRED)} (accuracies as fractions in [0, 1])"
        )
    if frame.empty:
        raise DataError(f"results table {path} has no rows; give a table with results")
    out = frame.copy()
    for name in TEXT_COLUMNS:
        if name == "model_key" and name not in out.columns:
            out[name] = out["model"]
        elif name not in out.columns:
            out[name] = DEFAULTS[name]
        _no_missing_text(out, name, path, required=name in REQUIRED)
        out[name] = out[name].astype(str).str.strip()
    if "depth" not in out.columns:
        layers = set(out["layer"])
        if layers != {"pre_logits"}:
            raise DataError(
                f"results table {path} names layers other than pre_logits but has no depth "
                "column; add depth (each layer's position in [0, 1], pre_logits = 1)"
            )
    for name in (*INTEGER_COLUMNS, *FLOAT_COLUMNS):
        if name not in out.columns:
            out[name] = DEFAULTS.get(name, math.nan)
        out[name] = _numbers(out[name], name, path)
    for name in PRETRAIN_IDENTITY:  # optional; blank = unknown
        if name not in out.columns:
            out[name] = None
        elif name == "pretrain_seed":
            out[name] = _numbers(out[name], name, path)
        else:
            text = out[name].astype(object).where(out[name].notna(), None)
            out[name] = [None if v is None or not str(v).strip() else str(v).strip() for v in text]
    for name in ACCURACY_COLUMNS:
        _check_accuracy(out, name, path, null_ok=name == "val_accuracy")
    for name in ("depth", *INTEGER_COLUMNS):
        _check_finite(out, name, path)
    if ((out["depth"] < 0) | (out["depth"] > 1)).any():
        raise DataError(f"results table {path}: depth outside [0, 1]; give each layer's position")
    for name in INTEGER_COLUMNS:
        values = out[name].to_numpy(float)
        if (values < 0).any() or (values != np.round(values)).any():
            raise DataError(
                f"results table {path}: {name} holds values that are not whole numbers ≥ 0"
            )
        out[name] = values.astype(np.int64)
    out["selected"] = _flags(out["selected"] if "selected" in frame else None, len(out), path)
    out["converged"] = pd.array([pd.NA] * len(out), dtype="boolean")
    if "created_at" in frame.columns:
        out["created_at"] = pd.to_datetime(frame["created_at"], utc=True, errors="coerce")
    else:
        stamp = pd.Timestamp(Path(path).stat().st_mtime, unit="s", tz="UTC")
        out["created_at"] = stamp
    out["schema_version"] = SCHEMA_VERSION
    _check_unique(out, path)
    _check_per_checkpoint(out, path)
    extra = [c for c in frame.columns if c not in COLUMNS]
    return out[[*COLUMNS, *extra]].reset_index(drop=True)


def _no_missing_text(frame: pd.DataFrame, name: str, path, required: bool) -> None:
    blank = frame[name].isna() | (frame[name].astype(str).str.strip() == "")
    if name in ("upstream_task", "config"):  # '' is a value: unknown upstream task, no config
        frame[name] = frame[name].where(~frame[name].isna(), "")
        return
    if blank.any():
        raise DataError(
            f"results table {path}: column {name} is empty in {int(blank.sum())} row(s) (first: "
            f"row {_row(frame, blank)}); fill or drop those rows"
        )


def _numbers(column: pd.Series, name: str, path) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        first = column[bad].iloc[0]
        raise DataError(
            f"results table {path}: column {name} holds non-numbers (e.g. {str(first)[:40]!r} in "
            f"row {_row(column.to_frame(), bad)}); give numbers"
        )
    return values.astype(float)


def _check_accuracy(frame: pd.DataFrame, name: str, path, null_ok: bool) -> None:
    values = frame[name].to_numpy(float)
    known = ~np.isnan(values)
    bad = ~np.isfinite(values) if not null_ok else np.isinf(values)
    if bad.any():
        raise DataError(
            f"results table {path}: {name} is missing or not finite in {int(bad.sum())} row(s) "
            f"(first: row {_row(frame, bad)}); fill or drop those rows"
        )
    finite = values[known & np.isfinite(values)]
    if len(finite) and (finite.max() > 1 or finite.min() < 0):
        if finite.min() >= 0 and finite.max() <= 100:
            raise DataError(
                f"results table {path}: {name} goes up to {finite.max():g}, which looks like "
                "percent: divide by 100 (accuracies are fractions in [0, 1])"
            )
        raise DataError(
            f"results table {path}: {name} has values outside [0, 1] (from {finite.min():g} to "
            f"{finite.max():g}); accuracies are fractions in [0, 1]"
        )


def _check_finite(frame: pd.DataFrame, name: str, path) -> None:
    bad = ~np.isfinite(frame[name].to_numpy(float))
    if bad.any():
        raise DataError(
            f"results table {path}: {name} is missing or not finite in {int(bad.sum())} row(s) "
            f"(first: row {_row(frame, bad)}); fill or drop those rows"
        )


def _flags(column: pd.Series | None, n: int, path) -> np.ndarray:
    if column is None:
        return np.ones(n, bool)
    text = column.astype(str).str.strip().str.lower()
    known = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    if not text.isin(list(known)).all():
        raise DataError(f"results table {path}: column selected holds values other than true/false")
    return text.map(known).to_numpy(bool)


def _check_unique(frame: pd.DataFrame, path) -> None:
    key = [c for c in ROW_KEY if c in frame.columns]
    probe = frame[key].astype(str)
    twice = probe.duplicated(keep=False)
    if twice.any():
        first = frame[twice].iloc[0]
        raise DataError(
            f"results table {path}: {int(twice.sum())} rows give the same result twice (e.g. "
            f"model {first['model']}, task {first['task']}, layer {first['layer']}, shots "
            f"{first['shots']}, seed {first['seed']}); add a seed (or shots, layer) column that "
            "tells them apart, or drop the duplicates"
        )


def _check_per_checkpoint(frame: pd.DataFrame, path) -> None:
    """What describes a checkpoint (US accuracy, upstream task, knobs) is one value per model key."""
    per = frame.groupby("model_key", sort=False)
    for name in ("upstream_task", "upstream_accuracy", *KNOBS, *PRETRAIN_IDENTITY):
        counts = per[name].nunique(dropna=False)
        if (counts > 1).any():
            model = counts.index[counts.to_numpy() > 1][0]
            raise DataError(
                f"results table {path}: {name} differs between the rows of model {model!r}, but "
                "it describes one checkpoint; give each checkpoint its own model (or model_key)"
            )


def _row(frame: pd.DataFrame, mask) -> int:
    """The file's row number (1 = the first data row) of the first row in ``mask``."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1
