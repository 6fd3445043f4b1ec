"""Reading the results store: every part below a results folder, as one table."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from layerprobe.errors import DataError
from layerprobe.results.parts import part_files, read_part
from layerprobe.results.schema import COLUMNS, NUMERIC, ROW_KEY


def load(
    results_dir: str | Path,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every result below ``results_dir`` as one DataFrame (one row per regularisation value).

    Parameters
    ----------
    results_dir : the folder given to ``layerprobe probe --results``.
    skip_bad : skip unreadable or foreign part files (with a warning) instead of raising.
    warn : where warnings go (default: stderr).
    columns : only these columns (plus the row key); default all of the schema.

    Returns
    -------
    DataFrame with the schema's columns (:mod:`layerprobe.results.schema`). Where the same
    result (``ROW_KEY``: model key, task, layer, shots, seed, λ, k, probe, configuration) is in
    several parts, the newest row is kept; other configurations are kept beside it.
    """
    files = part_files(results_dir)
    if not files:
        raise DataError(
            f"no results in {results_dir} (no .parquet part files); run "
            f"`layerprobe probe --cache CACHE --results {results_dir}` first"
        )
    wanted = None
    if columns is not None:
        wanted = list(dict.fromkeys([*columns, *ROW_KEY, "created_at"]))
    frames = []
    for path in files:
        try:
            frames.append(_checked(read_part(path, wanted), path))
        except DataError as err:
            if not skip_bad:
                raise
            (warn or _stderr)(f"skipping {err}")
    frames = [f for f in frames if len(f)]
    if not frames:
        raise DataError(f"no readable results in {results_dir}; re-run `layerprobe probe`")
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values("created_at", kind="stable")
    table = table.drop_duplicates(list(ROW_KEY), keep="last")
    table = table.sort_values(
        ["model_key", "task", "probe", "shots", "seed", "depth", "l2", "k"]
        if columns is None
        else list(ROW_KEY),
        kind="stable",
    ).reset_index(drop=True)
    return table if columns is None else table[[c for c in COLUMNS if c in wanted]]


def _checked(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    wrong = [c for c in NUMERIC if c in frame and not pd.api.types.is_numeric_dtype(frame[c])]
    if wrong:
        raise DataError(
            f"results part {path} has non-numeric column(s) {', '.join(wrong)}; it was not written "
            "by layerprobe: move it out of the results folder, or pass --skip-bad"
        )
    return frame


def _stderr(message: str) -> None:
    print(f"layerprobe: warning: {message}", file=sys.stderr)
