"""Reading the results store: every ``*.parquet`` part below a results folder, as one table."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from layerprobe.errors import DataError

# Columns every part must have (the design's results store contract).
REQUIRED = (
    "model",
    "model_key",
    "upstream_accuracy",
    "params",
    "data_fraction",
    "epochs",
    "head_wd",
    "head_lr",
    "task",
    "layer",
    "depth",
    "shots",
    "seed",
    "l2",
    "val_accuracy",
    "test_accuracy",
    "n_train",
    "n_test",
    "probe",
    "backend",
    "created_at",
)
# Columns that must hold numbers (a part written by another tool may store them as text).
NUMERIC = ("depth", "shots", "seed", "l2", "val_accuracy", "test_accuracy", "n_train", "n_test")
# A probe result is identified by these; a re-run's newer row replaces an older one.
KEY = ("model_key", "task", "layer", "shots", "seed", "l2", "probe", "backend")


def part_files(results_dir: str | Path) -> list[Path]:
    """The store's part files, sorted (temporary files of running writers are not included)."""
    root = Path(results_dir)
    if root.is_file():
        raise DataError(f"results folder {root} is a file; give --results the folder of part files")
    if not root.is_dir():
        raise DataError(
            f"results folder {root} does not exist; run `layerprobe probe --results {root}` first"
        )
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


def _read_part(path: Path) -> pd.DataFrame:
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as err:  # pyarrow raises several types for truncated or foreign files
        raise DataError(
            f"cannot read results part {path} ({type(err).__name__}: {err}); delete it and re-run "
            "`layerprobe probe`, or pass --skip-bad"
        ) from err
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(
            f"results part {path} is not a layerprobe results file (no {', '.join(missing)}); "
            "move it out of the results folder, or pass --skip-bad"
        )
    wrong = [c for c in NUMERIC if not pd.api.types.is_numeric_dtype(frame[c])]
    if wrong:
        raise DataError(
            f"results part {path} has non-numeric column(s) {', '.join(wrong)}; it was not written "
            "by `layerprobe probe`: move it out of the results folder, or pass --skip-bad"
        )
    return frame


def load(
    results_dir: str | Path, skip_bad: bool = False, warn: Callable[[str], None] | None = None
) -> pd.DataFrame:
    """Every probe result below ``results_dir`` as one DataFrame (one row per λ).

    Parameters
    ----------
    results_dir : the folder given to ``layerprobe probe --results``.
    skip_bad : skip unreadable part files (with a warning) instead of raising.
    warn : where warnings go (default: stderr).

    Returns
    -------
    DataFrame with the store's columns; where the same probe result (model key, task, layer,
    shots, seed, λ, probe, backend) is in several parts, the newest row is kept.
    """
    files = part_files(results_dir)
    if not files:
        raise DataError(
            f"no results in {results_dir} (no .parquet part files); run "
            f"`layerprobe probe --cache CACHE --results {results_dir}` first"
        )
    frames = []
    for path in files:
        try:
            frames.append(_read_part(path))
        except DataError as err:
            if not skip_bad:
                raise
            (warn or _stderr)(f"skipping {err}")
    frames = [f for f in frames if len(f)]
    if not frames:
        raise DataError(f"no readable results in {results_dir}; re-run `layerprobe probe`")
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values("created_at", kind="stable")
    table = table.drop_duplicates(list(KEY), keep="last")
    return table.sort_values(
        ["model_key", "task", "shots", "seed", "depth", "l2"], kind="stable"
    ).reset_index(drop=True)


def _stderr(message: str) -> None:
    print(f"layerprobe: warning: {message}", file=sys.stderr)
