"""The fit table for people: values with their intervals, as text, Markdown, CSV or JSON."""

from __future__ import annotations

import json
import math

import pandas as pd

from layerprobe.analysis.config import FIT_FORMATS as FORMATS
from layerprobe.errors import ConfigError


def fit_display(fits: pd.DataFrame) -> pd.DataFrame:
    """The fit table for people: ``0.812 [0.80, 0.83]`` where the data determine e_IR (status
    ``ok``); where they do not, the interval alone (``[0.00, 0.65]``) beside the status, never a
    bare point estimate. Prediction errors of the hull and the all-points fit with the number of
    held-out points they rest on."""
    ok = fits["status"] == "ok" if "status" in fits.columns else pd.Series(True, fits.index)

    def ci(name: str, digits: int = 3) -> pd.Series:
        return fits.apply(
            lambda r: _with_ci(
                r[name], r.get(f"{name}_lo"), r.get(f"{name}_hi"), digits, ok[r.name]
            ),
            axis=1,
        )

    shown = {
        "upstream": fits["upstream_task"],
        "task": fits["task"],
        "shots": fits["shots"],
        "probe": fits["probe"],
    }
    if "group" in fits.columns and (fits["group"].astype(str) != "").any():
        shown["group"] = fits["group"]
    shown.update(
        {
            "layer": fits["layer"],
            "points": fits["n_fit"].astype(str) + "/" + fits["n_checkpoints"].astype(str),
            "status": fits["status"],
            "k": ci("k"),
            "α": ci("alpha"),
            "e_IR": ci("e_ir"),
            "1 − e_IR": ci("saturation"),
            "fit error": fits["fit_error"].map(lambda v: _num(v, 4)),
            "prediction error hull / all (n)": fits.apply(_prediction, axis=1),
            "best DS": fits["best_ds"].map(lambda v: f"{v:.3f}"),
            "gap": fits["gap_to_saturation"].map(lambda v: _num(v, 3)),
        }
    )
    return pd.DataFrame(shown)


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "–"


def _prediction(row: pd.Series) -> str:
    hull, every = row.get("pred_error_hull"), row.get("pred_error_all")
    if hull is None:  # a table of an older layerprobe
        return _num(row.get("pred_error", math.nan), 4)
    return f"{_num(hull, 4)} / {_num(every, 4)} ({int(row.get('n_targets', 0))})"


def _with_ci(value: float, lo, hi, digits: int, determined: bool = True) -> str:
    has_ci = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
    interval = f"[{lo:.{digits}f}, {hi:.{digits}f}]" if has_ci else ""
    if not determined:  # an undetermined fit shows what the data allow, not a point estimate
        return interval or "–"
    if not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}" + (f" {interval}" if interval else "")


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
