"""Reading what the analysis needs from the store, and nothing more.

The analysis only looks at the λ chosen on validation (``selected == True``: one row in 30 with
the default grid) and at a dozen columns, so ``read_selected`` asks the store's one reader
(:func:`layerprobe.results.store.read`) for those rows and columns: each part opened once, only
those columns and the row groups holding selected rows decoded, text columns as pandas
categoricals. At the paper's scale (300 M rows) that is the difference between a few hundred
MB and tens of GB. Every part is validated exactly as ``results show`` validates it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from layerprobe.results.schema import KNOBS
from layerprobe.results.schema import PROBE_KEY as SCHEMA_PROBE_KEY
from layerprobe.results.store import ANALYSIS_SCHEMA, TEXT, read, read_apart

__all__ = [
    "ANALYSIS_SCHEMA",
    "CHECKPOINT_NUMBERS",
    "PROBE_KEY",
    "TEXT",
    "read_selected",
    "read_selected_apart",
]

# One probe result; a re-run's newer selected row replaces the older one.
PROBE_KEY = list(SCHEMA_PROBE_KEY)
# Numbers that describe a checkpoint, one value per model key: what ``read_selected_apart``
# returns once per checkpoint instead of on each of its rows.
CHECKPOINT_NUMBERS = ("upstream_accuracy", *KNOBS, "pretrain_seed")


def read_selected(
    results_dir: str | Path,
    columns: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    *,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    row_cache: bool = True,
) -> pd.DataFrame:
    """The selected-λ rows of the store below ``results_dir``: :func:`~layerprobe.results.store.read`
    with ``selected_only=True`` (see its contract).

    Parameters
    ----------
    results_dir : the results folder (Parquet part files below it, any depth).
    columns : the columns to read (default: every column of ``ANALYSIS_SCHEMA``); the probe key
        and ``created_at`` are always read.
    layers : only these layers (filtered as the parts are read, like ``selected``).
    skip_bad, warn : leave out bad parts with a warning (to ``warn``; default: a
        ``LayerprobeWarning``).
    row_cache : serve unchanged parts' rows from the selected-rows cache beside the store
        (:mod:`layerprobe.results.rowcache`); False opens every part.

    Returns
    -------
    DataFrame, one row per (model_key, task, layer, shots, seed, probe, config); text columns as
    categoricals, missing optional columns as nulls.
    """
    return read(
        results_dir,
        columns=columns,
        selected_only=True,
        layers=layers,
        skip_bad=skip_bad,
        warn=warn,
        row_cache=row_cache,
    )


def read_selected_apart(
    results_dir: str | Path,
    columns: Sequence[str],
    layers: Sequence[str] | None = None,
    *,
    apart: Sequence[str] = CHECKPOINT_NUMBERS,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    row_cache: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`read_selected`, with the columns ``apart`` once per checkpoint instead of on every
    row (:func:`~layerprobe.results.store.read_apart`): the same rows in less memory.

    Returns
    -------
    (rows with ``columns`` but not ``apart``, one row per model_key with ``apart``'s columns).
    """
    return read_apart(
        results_dir,
        columns=columns,
        apart=apart,
        layers=layers,
        skip_bad=skip_bad,
        warn=warn,
        row_cache=row_cache,
    )
