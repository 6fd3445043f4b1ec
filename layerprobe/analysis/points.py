"""From probe rows to one (US accuracy, DS accuracy) point per checkpoint.

A checkpoint is a ``model_key``. Its DS accuracy on (task, shots, probe) is the mean over seeds
of the selected-λ test accuracy at one layer: ``pre_logits`` (what the paper fits), ``best``
(the checkpoint's best layer on that task by that mean) or any named layer. Its US accuracy is
``upstream_accuracy``. Points are grouped by (upstream task, task, shots, probe): the paper
fits one curve per US task, DS task and shot count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from layerprobe.errors import DataError, UnknownNameError, did_you_mean
from layerprobe.results.frames import first_rows, first_values, key_codes
from layerprobe.results.schema import KNOBS
from layerprobe.runtime.warn import warn as warn_user

GROUP = ["upstream_task", "task", "shots", "probe"]
# The store columns a checkpoint's (US, DS) points are made from (``read_selected(DIR,
# columns=POINT_COLUMNS)``); the fit and the matched pairs read these.
POINT_COLUMNS = (
    "model",
    "model_key",
    "upstream_task",
    "upstream_accuracy",
    *KNOBS,
    "task",
    "layer",
    "depth",
    "shots",
    "seed",
    "test_accuracy",
    "probe",
)
NO_US = (
    "the results have no upstream accuracy (column upstream_accuracy is empty), so there is "
    "nothing to fit DS accuracy against; probe pre-training checkpoints (they carry it) or "
    "measure it with `layerprobe upstream`"
)


def only_selected(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the λ chosen on validation (a table read with ``read_selected`` has only those)."""
    if "selected" in table.columns and not table["selected"].all():
        table = table[table["selected"].fillna(False).astype(bool)]
    return table


def as_text(column: pd.Series) -> pd.Series:
    """``column.astype(str)``; for a categorical without missing values, its categories are
    converted and then taken by code, instead of every row converted (seconds at 10 M rows)."""
    if isinstance(column.dtype, pd.CategoricalDtype) and not column.isna().any():
        text = column.cat.categories.astype(str).take(column.cat.codes.to_numpy())
        return pd.Series(text, index=column.index, name=column.name)
    return column.astype(str)


def with_upstream_task(table: pd.DataFrame) -> pd.DataFrame:
    """``upstream_task`` as plain text, '' where unknown (so it can be a group key)."""
    if "upstream_task" not in table.columns:
        return table.assign(upstream_task="")
    column = table["upstream_task"]
    if isinstance(column.dtype, pd.CategoricalDtype):  # stay categorical: no object per row
        if "" not in column.cat.categories:
            column = column.cat.add_categories([""])
        return table.assign(upstream_task=column.fillna(""))
    return table.assign(upstream_task=column.astype(object).fillna(""))


def seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error and count over seeds of the selected test accuracy, per layer.

    Returns
    -------
    DataFrame: model_key, upstream_task, task, shots, probe, layer, depth, accuracy (mean, 0–1),
    se (std over seeds / sqrt(seeds); 0 for one seed), seeds.
    """
    table = with_upstream_task(only_selected(table))
    keys = ["model_key", *GROUP, "layer"]
    if table[keys].isna().any(axis=None):
        table = table.dropna(subset=keys)  # as groupby drops rows with a missing key
    # Grouped on one int64 code per row instead of six key columns: pandas' multi-key grouping
    # holds several 8-byte arrays per key (GiB at 10 M rows); the groups, their order (first
    # appearance) and the arithmetic (the same aggregations, rows in the same order) are the same.
    codes, _ = key_codes(table, keys)
    grouped = table.groupby(keys if codes is None else codes, observed=True, sort=False)
    stats = grouped.agg(
        depth=("depth", "first"),
        accuracy=("test_accuracy", "mean"),
        std=("test_accuracy", "std"),
        seeds=("test_accuracy", "count"),
    )
    if codes is None:
        stats = stats.reset_index()
    else:
        # A group's keys are those of its first row (groups come in order of first appearance).
        first = table[keys].take(first_rows(codes))
        stats = pd.concat([first.reset_index(drop=True), stats.reset_index(drop=True)], axis=1)
    stats["se"] = (stats.pop("std") / np.sqrt(stats["seeds"])).fillna(0.0)
    for col in ("model_key", "task", "layer", "probe"):
        stats[col] = as_text(stats[col])
    return stats


def best_layers(means: pd.DataFrame, keys: list[str]) -> pd.Index:
    """Index labels of each curve's best layer: the first layer in depth order with the highest
    mean accuracy; curves in order of their first row in depth order.

    The same as ``means.sort_values("depth", kind="stable").groupby(keys, sort=False)
    ["accuracy"].idxmax()``, from three arrays (an order, one code per row, the accuracies)
    instead of a sorted copy of every column (half a GiB at 3 M curve points).
    """
    codes, _ = key_codes(means, keys)
    if codes is None:
        ordered = means.sort_values(["depth"], kind="stable")
        return pd.Index(ordered.groupby(keys, sort=False)["accuracy"].idxmax())
    order = np.argsort(means["depth"].to_numpy(), kind="stable")
    accuracy = pd.Series(means["accuracy"].to_numpy()[order])
    first = accuracy.groupby(codes[order], sort=False).idxmax().to_numpy()
    return means.index[order[first]]


def checkpoint_info(table: pd.DataFrame, checkpoints: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model_key: model, upstream accuracy and the pre-training knobs (first value).

    Parameters
    ----------
    table : store rows.
    checkpoints : columns of the checkpoints read apart from ``table``'s rows
        (:func:`~layerprobe.results.read.read_selected_apart`).
    """
    names = ["model", "upstream_accuracy", *KNOBS]
    cols = [c for c in names if c in table.columns]
    key = table["model_key"]
    if isinstance(key.dtype, pd.CategoricalDtype) and not key.isna().any():
        info = first_values(key, table[cols])
    else:
        info = table.groupby("model_key", observed=True, sort=False)[cols].first().reset_index()
    info["model_key"] = info["model_key"].astype(str)
    if checkpoints is not None:  # the columns read apart, in the order a full read has them
        more = [c for c in names if c in checkpoints.columns and c not in cols]
        first = checkpoints.groupby("model_key", sort=False)[more].first().reset_index()
        info = info.merge(first.astype({"model_key": str}), on="model_key", how="left")
        info = info[["model_key", *[c for c in names if c in cols or c in more]]]
    for col in names:
        if col not in info.columns:
            info[col] = np.nan
    if "model" in info.columns:
        info["model"] = info["model"].astype(str)
    return info


def checkpoint_points(
    table: pd.DataFrame | None,
    layer: str = "pre_logits",
    *,
    warn: Callable[[str], None] | None = None,
    require_us: bool = True,
    checkpoints: pd.DataFrame | None = None,
    means: pd.DataFrame | None = None,
    info: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One point per checkpoint and (upstream task, task, shots, probe).

    Parameters
    ----------
    table : store rows (all λ or only the selected ones).
    layer : ``pre_logits``, ``best`` or a layer name.
    require_us : raise :class:`DataError` when no row has an upstream accuracy.
    checkpoints : the checkpoints' US accuracy and knobs when they were read apart from
        ``table`` (:func:`~layerprobe.results.read.read_selected_apart`).
    means, info : ``table``'s :func:`seed_means` and :func:`checkpoint_info`, when the caller
        has them already (with both, ``table`` is not read and may be None).

    Returns
    -------
    DataFrame: upstream_task, task, shots, probe, model_key, model, layer, depth, us (US accuracy,
    0–1), ds (DS accuracy, 0–1), ds_se, seeds, and the knob columns.
    """
    means = seed_means(table) if means is None else means
    if layer == "best":
        chosen = means.loc[best_layers(means, ["model_key", *GROUP])]
    else:
        layers = set(means["layer"].unique())  # distinct values first: millions of rows
        if layer not in layers:
            raise unknown_layer(layer, layers)
        chosen = means[means["layer"] == layer]
        lacking = sorted(set(means["model_key"].unique()) - set(chosen["model_key"].unique()))
        if lacking:
            _warn(warn, f"{len(lacking)} checkpoint(s) have no layer {layer!r} and are left out")
    points = chosen.rename(columns={"accuracy": "ds", "se": "ds_se"})
    info = checkpoint_info(table, checkpoints) if info is None else info
    points = points.merge(info, on="model_key", how="left")
    points = points.rename(columns={"upstream_accuracy": "us"})
    if require_us:
        has = points["us"].notna()
        if not has.any():
            raise DataError(NO_US)
        if not has.all():
            n = points.loc[~has, "model_key"].nunique()
            _warn(warn, f"{n} checkpoint(s) have no upstream accuracy and are left out of the fit")
            points = points[has]
    cols = [*GROUP, "model_key", "model", "layer", "depth", "us", "ds", "ds_se", "seeds", *KNOBS]
    return points[cols].sort_values([*GROUP, "us", "model_key"]).reset_index(drop=True)


def unknown_layer(layer: str, names: set[str]) -> UnknownNameError:
    """The error for a ``--layer`` that no result has."""
    return UnknownNameError(
        f"no results at layer {layer!r}.{did_you_mean(layer, sorted(names))} Use --layer "
        "pre_logits, best, or one of the probed layers (`layerprobe results show` lists them)."
    )


def _warn(warn: Callable[[str], None] | None, message: str) -> None:
    if warn is not None:
        warn(message)
    else:
        warn_user(message, stacklevel=2)
