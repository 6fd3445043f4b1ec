"""The results schema: the one list of columns every stage writes and every reader expects.

One row per (model key, task, layer, shots, seed, regularisation value, probe configuration).
A new column comes with a ``SCHEMA_VERSION`` bump (docs/contracts.md): readers refuse
parts of another version instead of guessing what their columns mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = 2

# What pre-training recorded about a checkpoint: the keys of a checkpoint's `pretrain_info`
# (and of a cache's `pretrain` attribute) that become columns of every row of its model.
PRETRAIN_COLUMNS = (
    "upstream_task",
    "upstream_accuracy",
    "params",
    "data_fraction",
    "epochs",
    "head_wd",
    "head_lr",
)
KNOBS = ("params", "data_fraction", "epochs", "head_wd", "head_lr")

SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("model_key", pa.string()),
        ("upstream_task", pa.string()),
        ("upstream_accuracy", pa.float64()),
        ("params", pa.int64()),
        ("data_fraction", pa.float64()),
        ("epochs", pa.float64()),
        ("head_wd", pa.float64()),
        ("head_lr", pa.float64()),
        ("task", pa.string()),
        ("layer", pa.string()),
        ("depth", pa.float64()),
        ("shots", pa.int64()),  # examples per class; 0 = the whole train split
        ("seed", pa.int64()),
        ("l2", pa.float64()),  # the regularisation value (λ); null where a probe has none
        ("k", pa.int64()),  # neighbours of a k-NN probe; null for the other families
        ("val_accuracy", pa.float64()),
        ("test_accuracy", pa.float64()),
        ("n_train", pa.int64()),
        ("n_test", pa.int64()),
        ("probe", pa.string()),  # ridge, logistic, knn, finetune
        ("l2_select", pa.string()),  # the policy that chose `selected`: "val" or "fixed:VALUE"
        ("converged", pa.bool_()),  # iterative probes: reached the tolerance; null otherwise
        ("backend", pa.string()),
        ("config", pa.string()),  # hash of everything besides the row's key that changes values
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("selected", pa.bool_()),  # the row chosen by `l2_select` for its probe
        ("schema_version", pa.int64()),
    ],
    metadata={"layerprobe_schema_version": str(SCHEMA_VERSION)},
)
COLUMNS: list[str] = SCHEMA.names
NULLABLE = PRETRAIN_COLUMNS + ("l2", "k", "converged")

# One result: a re-run's newer row with the same key replaces the older one. The probe
# configuration is part of it, so two configurations of one probe are never mixed.
ROW_KEY = ("model_key", "task", "layer", "shots", "seed", "l2", "k", "probe", "config")
# One probe (all of its regularisation values): `selected` is true on exactly one row of each.
PROBE_KEY = ("model_key", "task", "layer", "shots", "seed", "probe", "config")
# Columns that must hold numbers.
NUMERIC = ("depth", "shots", "seed", "val_accuracy", "test_accuracy", "n_train", "n_test")


def pretrain_columns(info: Mapping | None) -> dict:
    """The pre-training columns of a checkpoint's ``pretrain_info`` (null where unknown)."""
    info = info or {}
    out = {"upstream_task": _text(info.get("upstream_task"))}
    for key in PRETRAIN_COLUMNS[1:]:
        out[key] = _number(info.get(key), integer=key == "params")
    return out


def to_table(rows: pd.DataFrame) -> pa.Table:
    """``rows`` as an Arrow table of exactly the schema (nullable columns may be missing)."""
    frame = rows.copy()
    for name in NULLABLE:
        if name not in frame.columns:
            frame[name] = None
    frame["schema_version"] = SCHEMA_VERSION
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"results rows lack column(s) {', '.join(missing)}")
    return pa.Table.from_pandas(frame[COLUMNS], schema=SCHEMA, preserve_index=False)


def _text(value) -> str | None:
    return None if value is None else str(value)


def _number(value, integer: bool = False):
    """A knob as a number, or None (null) when unknown or not numeric."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return int(round(number)) if integer else number
