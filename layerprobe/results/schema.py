"""The results schema: the one list of columns every stage writes and every reader expects.

One row per (model key, task, layer, shots, seed, regularisation value, probe configuration).
A new column comes with a ``SCHEMA_VERSION`` bump (docs/contracts.md): readers refuse
parts of a version they do not know instead of guessing what their columns mean, and read the
older versions of :data:`READABLE_VERSIONS` with the columns added since as unknown (null).

Versions: 2 — the columns up to ``schema_version``; 3 — the pre-training identity
(``pretrain_model``, ``pretrain_seed``, ``pretrain_schedule``), so matched knob pairs are
matched on the architecture, seed and schedule, not on the parameter count alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = 3
# Versions whose parts are read (columns a version lacks come as nulls: unknown).
READABLE_VERSIONS = (2, 3)

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
    "pretrain_model",
    "pretrain_seed",
    "pretrain_schedule",
)
KNOBS = ("params", "data_fraction", "epochs", "head_wd", "head_lr")
# What else a pre-training run is (schema 3): the architecture (``model`` of the record, with
# its constructor arguments), the seed, and the schedule (:data:`SCHEDULE_KEYS`). Null for
# checkpoints not made by ``layerprobe pretrain`` and in parts of schema 2.
PRETRAIN_IDENTITY = ("pretrain_model", "pretrain_seed", "pretrain_schedule")
# The training settings of a ``layerprobe pretrain`` record besides the knobs and the seed, in
# the order ``pretrain_schedule`` spells them (``key=value``, space-separated): the body's peak
# learning rate and weight decay (the head's are the knobs), warm-up, label smoothing, batch
# size, input size, the length of the cosine schedule (a snapshot after 2 of 4 epochs is not a
# 2-epoch run) and the precision.
SCHEDULE_KEYS = (
    "lr",
    "wd",
    "warmup_epochs",
    "label_smoothing",
    "batch_size",
    "image_size",
    "schedule_epochs",
    "precision",
)

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
        ("pretrain_model", pa.string()),  # the architecture pre-trained (with its arguments)
        ("pretrain_seed", pa.int64()),
        ("pretrain_schedule", pa.string()),  # SCHEDULE_KEYS as key=value
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
    """The pre-training columns of a checkpoint's ``pretrain_info`` (null where unknown).

    The knobs are numbers; ``pretrain_model``, ``pretrain_seed`` and ``pretrain_schedule`` come
    from a ``layerprobe pretrain`` record only (its ``model``, ``seed`` and schedule settings,
    from the record or the run ``config`` it keeps), so they are null for anything else.
    """
    info = info or {}
    out = {"upstream_task": _text(info.get("upstream_task"))}
    for key in ("upstream_accuracy", *KNOBS):
        out[key] = _number(info.get(key), integer=key == "params")
    out.update(pretrain_identity(info))
    return out


def pretrain_identity(info: Mapping) -> dict:
    """``pretrain_model``, ``pretrain_seed`` and ``pretrain_schedule`` of a pre-training record.

    A record is a ``layerprobe pretrain`` one when it names its ``model`` and keeps its run
    ``config`` (a mapping); otherwise all three are None. The model is the name, followed by its
    constructor arguments as sorted JSON when it had any (``vit-tiny32 {"depth": 6}``); the
    schedule is :data:`SCHEDULE_KEYS` as ``key=value`` (numbers to 12 significant digits), each
    from the record or else its config, leaving out what neither holds.
    """
    config = info.get("config")
    if not isinstance(config, Mapping) or not isinstance(info.get("model"), str):
        return dict.fromkeys(PRETRAIN_IDENTITY)
    model = info["model"]
    if config.get("model_args"):
        model += " " + json.dumps(config["model_args"], sort_keys=True, default=str)
    seed = _number(info.get("seed", config.get("seed")), integer=True)
    settings = []
    for key in SCHEDULE_KEYS:
        value = info.get(key, config.get("epochs") if key == "schedule_epochs" else config.get(key))
        if value is not None:
            settings.append(f"{key}={_setting(value)}")
    return {
        "pretrain_model": model,
        "pretrain_seed": seed,
        "pretrain_schedule": " ".join(settings) or None,
    }


def _setting(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.12g}"


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
