"""Writing the results store: one Parquet part file per unit of work.

Layout: ``<results>/<model_key>/<task>.<config>.parquet``, where ``<config>`` is a short hash
of the probe configuration (shots, seeds, λ grid, layers, backend, precision, validation
scheme). Parallel runs on different units never write the same file; a part is written to
a temporary name in the same folder and renamed when complete, so readers never see half a
file. ``layerprobe.results.load`` reads every ``*.parquet`` below ``<results>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

STORE_VERSION = 1

# The results store contract (design.md), plus `selected`: the λ chosen on validation.
SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("model_key", pa.string()),
        ("upstream_accuracy", pa.float64()),
        ("params", pa.int64()),
        ("data_fraction", pa.float64()),
        ("epochs", pa.float64()),
        ("head_wd", pa.float64()),
        ("head_lr", pa.float64()),
        ("task", pa.string()),
        ("layer", pa.string()),
        ("depth", pa.float64()),
        ("shots", pa.int64()),
        ("seed", pa.int64()),
        ("l2", pa.float64()),
        ("val_accuracy", pa.float64()),
        ("test_accuracy", pa.float64()),
        ("n_train", pa.int64()),
        ("n_test", pa.int64()),
        ("probe", pa.string()),
        ("backend", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("selected", pa.bool_()),
    ],
    metadata={"layerprobe_store_version": str(STORE_VERSION)},
)
COLUMNS = SCHEMA.names


def _safe(name: str) -> str:
    """A file-name-safe version of a model key or task name (``builtin/shapes`` -> ``builtin__shapes``)."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", name.replace("/", "__")).strip(".") or "_"


def config_hash(config: dict) -> str:
    """Ten hex digits identifying a probe configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def part_path(results_dir: str | Path, model_key: str, task: str, config: dict) -> Path:
    """Where the part file of (model key, task, configuration) lives."""
    return Path(results_dir) / _safe(model_key) / f"{_safe(task)}.{config_hash(config)}.parquet"


def write_part(rows: pd.DataFrame, path: str | Path) -> Path:
    """Write ``rows`` (exactly the store's columns) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(rows[COLUMNS], schema=SCHEMA, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
