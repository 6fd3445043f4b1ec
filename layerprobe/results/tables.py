"""The fit table for people: values with their intervals, as text, Markdown, CSV or JSON."""

from __future__ import annotations

import json
import math

import pandas as pd

from layerprobe.errors import ConfigError

FORMATS = ("table", "markdown", "csv", "json")


def fit_display(fits: pd.DataFrame) -> pd.DataFrame:
    """The fit table with intervals folded into the values (``0.812 [0.80, 0.83]``), for people."""

    def ci(name: str, digits: int = 3) -> pd.Series:
        return fits.apply(
            lambda r: _with_ci(r[name], r[f"{name}_lo"], r[f"{name}_hi"], digits), axis=1
        )

    return pd.DataFrame(
        {
            "upstream": fits["upstream_task"],
            "task": fits["task"],
            "shots": fits["shots"],
            "probe": fits["probe"],
            "layer": fits["layer"],
            "points": fits["n_fit"].astype(str) + "/" + fits["n_checkpoints"].astype(str),
            "status": fits["status"],
            "k": ci("k"),
            "α": ci("alpha"),
            "e_IR": ci("e_ir"),
            "1 − e_IR": ci("saturation"),
            "fit error": ci("fit_error", 4),
            "prediction error": ci("pred_error", 4),
            "best DS": fits["best_ds"].map(lambda v: f"{v:.3f}"),
            "gap": fits["gap_to_saturation"].map(lambda v: f"{v:.3f}"),
        }
    )


def _with_ci(value: float, lo: float, hi: float, digits: int) -> str:
    if not math.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    return text + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if math.isfinite(lo) else "")


def format_fits(fits: pd.DataFrame, fmt: str = "table") -> str:
    """``table`` and ``markdown`` show :func:`fit_display`; ``csv`` and ``json`` every column."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return fits.to_csv(index=False, float_format="%.6g")
    if fmt == "json":
        records = fits.astype(object).where(fits.notna(), None).to_dict(orient="records")
        return json.dumps(records, indent=1, default=_plain) + "\n"
    shown = fit_display(fits)
    if fmt == "markdown":
        head = "| " + " | ".join(shown.columns) + " |"
        rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
        body = [
            "| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)
        ]
        return "\n".join([head, rule, *body]) + "\n"
    return shown.to_string(index=False) + "\n"


def _plain(value):
    """numpy scalars to Python numbers for json."""
    return value.item() if hasattr(value, "item") else str(value)
