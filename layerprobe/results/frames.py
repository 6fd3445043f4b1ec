"""Frame helpers of the store's reader and the analysis: a multi-column key as one int64 per
row, and each key's first row or first values — found without pandas' grouping, whose arrays
of 8 bytes per row and key column cost GiB at the paper's scale (10 M selected rows)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SPAN = 1 << 16  # integer key columns of a smaller range are used as codes directly


def key_codes(frame: pd.DataFrame, key: Sequence[str]) -> tuple[np.ndarray | None, int]:
    """One int64 per row that is equal for two rows exactly when their ``key`` values are
    (missing values equal to each other), and the number of possible codes.

    Each key column becomes integer codes (a categorical's own, a small-range integer column's
    values, else ``pd.factorize``), and the codes one number in mixed radix: a multi-column key
    in one array of 8 bytes per row.

    Returns
    -------
    (codes (N,) int64 in [0, size), size), or (None, 0) when the combinations overflow int64.
    """
    combined = np.zeros(len(frame), np.int64)
    size = 1
    for name in key:
        column = frame[name]
        exact = isinstance(column.dtype, np.dtype) and (
            column.dtype.kind == "i" or column.dtype.kind == "u" and column.dtype.itemsize < 8
        )
        values = column.to_numpy() if exact and len(column) else None
        if isinstance(column.dtype, pd.CategoricalDtype):  # its codes as they are (int8 …)
            codes, shift, n = column.cat.codes.to_numpy(), 1, len(column.cat.categories) + 1
        elif values is not None and int(values.max()) - int(values.min()) < SPAN:
            # integers of a small range (shots, seeds) are their own codes: no array made
            codes, shift, n = values, -int(values.min()), int(values.max()) - int(values.min()) + 1
        else:
            codes, uniques = pd.factorize(column, use_na_sentinel=False)
            shift, n = 0, max(len(uniques), 1)
        if size > (2**62) // n:
            return None, 0
        combined *= n  # in place, no array of the row count but this one
        combined += codes
        combined += shift  # a missing category (code -1) is 0
        size *= n
    return combined, size


def first_rows(codes: np.ndarray) -> np.ndarray:
    """Positions of each distinct value's first occurrence in ``codes`` (N,), in order of first
    appearance. Only the starts of runs of equal values can be one, and the store's rows come
    part by part (long runs), so the search is over a few starts, not every row."""
    if len(codes) == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    _, first = np.unique(codes[starts], return_index=True)
    return starts[np.sort(first)]


def distinct_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame.drop_duplicates()`` (missing values equal; the kept rows in order of first
    appearance, with their index), found from one code per row (:func:`key_codes`) instead of
    pandas' hash of every column."""
    codes, _ = key_codes(frame, list(frame.columns))
    if codes is None:  # too many combinations for one int64: pandas' own
        return frame.drop_duplicates()
    return frame.iloc[first_rows(codes)]


def first_values(key: pd.Series, values: pd.DataFrame) -> pd.DataFrame:
    """``values.groupby(key, observed=True, sort=False).first().reset_index()`` for a
    categorical ``key`` without missing values, found from the rows where the key changes.

    The store's rows come part by part, so a checkpoint's rows are a few long runs: each key's
    first row is the first of its runs, and each column's first non-missing value is found the
    same way among its non-missing rows — a few small arrays instead of pandas' grouping of
    every column (half a GiB at 10 M rows).
    """
    codes = key.cat.codes.to_numpy()
    rows = first_rows(codes)  # (K,) in order of first appearance
    info = {key.name: key.iloc[rows].reset_index(drop=True)}
    for name, column in values.items():
        missing = column.isna().to_numpy()
        if not missing.any():
            info[name] = column.iloc[rows].reset_index(drop=True)
            continue
        have = np.flatnonzero(~missing)
        found = have[first_rows(codes[have])]  # each key's first row with a value
        where = pd.Series(found, index=codes[found]).reindex(codes[rows]).to_numpy()
        took = column.iloc[np.where(np.isnan(where), 0, where).astype(np.int64)]
        info[name] = took.where(~np.isnan(where)).reset_index(drop=True)
    return pd.DataFrame(info)
