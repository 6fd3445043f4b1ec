"""Layer-wise summaries of the store: accuracy at the λ chosen on validation, per seed, then
mean ± std over seeds for every (model, task, shots, layer); the best layer is marked."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from layerprobe.errors import ConfigError, DataError, UnknownNameError, did_you_mean

FORMATS = ("text", "csv", "markdown", "json")
GROUP = ["model", "model_key", "task", "shots", "probe", "l2_select", "backend", "config"]


def selected(table: pd.DataFrame) -> pd.DataFrame:
    """One row per probe: the row its λ policy chose.

    Parameters
    ----------
    table : store rows, one per regularisation value.

    Returns
    -------
    pandas.DataFrame
        The rows whose stored ``selected`` column is true, re-indexed from 0.
    """
    return table[table["selected"].astype(bool)].reset_index(drop=True)


def filter_table(
    table: pd.DataFrame,
    *,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    shots: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Rows of the given tasks, models and shot counts.

    Parameters
    ----------
    table : store rows (:func:`~layerprobe.results.load`), one per row of the schema.
    tasks : task names to keep; None: every task.
    models : model names or model keys to keep; None: every model.
    shots : shot counts to keep; None: every count.

    Returns
    -------
    pandas.DataFrame
        The matching rows, same columns.

    Raises
    ------
    UnknownNameError
        A task or model the table does not hold (with the names it does hold).
    """
    for name in tasks or []:
        if name not in set(table["task"]):
            have = sorted(set(table["task"]))
            raise UnknownNameError(
                f"no results for task {name!r}.{did_you_mean(name, have)} Tasks: {', '.join(have)}."
            )
    for name in models or []:
        if name not in set(table["model"]) | set(table["model_key"]):
            have = sorted(set(table["model"]) | set(table["model_key"]))
            raise UnknownNameError(
                f"no results for model {name!r}.{did_you_mean(name, have)} Models: {', '.join(have)}."
            )
    check_shots(table, shots)
    keep = np.ones(len(table), bool)
    if tasks:
        keep &= table["task"].isin(tasks).to_numpy()
    if models:
        keep &= (table["model"].isin(models) | table["model_key"].isin(models)).to_numpy()
    if shots:
        keep &= table["shots"].isin(shots).to_numpy()
    if not keep.any():
        have = table.groupby(["model", "task"])["shots"].unique()
        listing = "; ".join(
            f"{model} on {task}: shots {sorted(int(k) for k in ks)}"
            for (model, task), ks in have.items()
        )
        raise DataError(f"no results match these filters together; the store has {listing[:600]}")
    return table[keep]


def check_shots(table: pd.DataFrame, shots: Sequence[int] | None) -> None:
    """Every shot count asked for is in ``table``; else :class:`DataError` naming those there."""
    have = {int(v) for v in pd.unique(table["shots"])} if len(table) else set()
    for k in shots or []:
        if int(k) not in have:
            listing = ", ".join(str(v) for v in sorted(have)) or "none"
            raise DataError(f"no results with {k} shots; the store has shots {listing}")


def layer_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (over seeds) of the selected-λ test accuracy of every layer.

    Returns
    -------
    DataFrame: model, model_key, task, shots, probe, backend, layer, depth, accuracy (mean),
    std (sample std over seeds; 0 for one seed), seeds, best (the layer with the highest mean).
    """
    chosen = selected(table)
    stats = (
        chosen.groupby(GROUP + ["layer", "depth"], sort=False, dropna=False)["test_accuracy"]
        .agg(accuracy="mean", std="std", seeds="count")
        .reset_index()
    )
    stats["std"] = stats["std"].fillna(0.0)
    # Few-shot counts in increasing order, the full train split (shots = 0) after them.
    stats["_order"] = stats["shots"].where(stats["shots"] > 0, np.iinfo(np.int64).max)
    stats = stats.sort_values(
        ["model", "model_key", "task", "_order", "probe", "config", "depth"], kind="stable"
    )
    stats = stats.drop(columns="_order").reset_index(drop=True)
    top = stats.groupby(GROUP, sort=False, dropna=False)["accuracy"].transform("max")
    stats["best"] = False
    first_best = (
        stats[stats["accuracy"] == top].groupby(GROUP, sort=False, dropna=False).head(1).index
    )
    stats.loc[first_best, "best"] = True
    return stats


def format_summary(summary: pd.DataFrame, fmt: str = "text") -> str:
    """The summary as text.

    Parameters
    ----------
    summary : the rows of :func:`layer_summary`.
    fmt : ``text`` (one block per model × task × shots), ``csv``, ``markdown`` or ``json``.

    Returns
    -------
    str
        The formatted summary.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return summary.to_csv(index=False, float_format="%.6g")
    if fmt == "json":
        return json.dumps(summary.to_dict(orient="records"), indent=1, default=str)
    if fmt == "markdown":
        return _markdown(summary)
    return _text(summary)


def _percent(row) -> str:
    return f"{100 * row.accuracy:5.1f} ± {100 * row.std:4.1f}"


def _shots(k: int) -> str:
    return "full train split" if int(k) == 0 else f"{int(k)}-shot"


def _text(summary: pd.DataFrame) -> str:
    blocks = []
    for key, part in summary.groupby(GROUP, sort=False, dropna=False):
        model, model_key, task, shots, probe, l2_select, backend, config = key
        seeds = int(part["seeds"].max())
        what = "k" if str(probe).startswith("knn") else "λ"
        how = f"{probe}, {what} by {l2_select}, {backend}, config {config}"
        head = f"{model} [{model_key}]  {task}  {_shots(shots)}  ({seeds} seed{'s' * (seeds != 1)}; {how})"
        width = max(5, *(len(s) for s in part["layer"]))
        lines = [head, f"  {'layer':<{width}}  depth  test accuracy %"]
        for row in part.itertuples():
            mark = "  <- best" if row.best else ""
            lines.append(f"  {row.layer:<{width}}  {row.depth:5.2f}  {_percent(row)}{mark}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _markdown(summary: pd.DataFrame) -> str:
    lines = [
        "| model | task | shots | probe | layer | depth | test accuracy % | best |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | :---: |",
    ]
    for row in summary.itertuples():
        lines.append(
            f"| {row.model} | {row.task} | {int(row.shots)} | {row.probe} | {row.layer} | {row.depth:.2f} | "
            f"{_percent(row)} | {'**best**' if row.best else ''} |"
        )
    return "\n".join(lines) + "\n"
