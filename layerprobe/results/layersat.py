"""Layer saturation: where along the depth of a model each task stops improving.

Per checkpoint, task, shots and probe: the accuracy of every layer (mean over seeds of the
selected-λ test accuracy), the best layer, the **saturation depth** — the depth of the earliest
layer whose mean is within a tolerance of the best (default: one standard error over seeds of
the best layer's mean; with one seed that is "equal to the best") — and the gap between the best
layer and the last one. The paper's Section 4 claim: tasks that saturate early (high e_IR in the
saturation fit) peak below the last layer. :func:`saturation_correlation` tests it across tasks
with Spearman's rank correlation, on the user's own results.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from layerprobe.errors import ConfigError
from layerprobe.results.points import GROUP, checkpoint_info, seed_means

KEY = ["model_key", *GROUP]
MEASURES = ("saturation_depth", "best_depth", "gap")


def layer_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against depth: one row per (checkpoint, upstream task, task, shots, probe, layer).

    Returns
    -------
    DataFrame: model_key, model, upstream_task, task, shots, probe, layer, depth, accuracy
    (mean over seeds, 0–1), se (standard error over seeds), seeds, us (upstream accuracy or NaN),
    sorted by depth within each curve.
    """
    curves = seed_means(table)
    info = checkpoint_info(table)[["model_key", "model", "upstream_accuracy"]]
    curves = curves.merge(info.rename(columns={"upstream_accuracy": "us"}), on="model_key")
    return curves.sort_values([*KEY, "depth"], kind="stable").reset_index(drop=True)


def layer_saturation(table: pd.DataFrame, tolerance: float | str = "se") -> pd.DataFrame:
    """Best layer, saturation depth and best-minus-last gap of every curve.

    Parameters
    ----------
    table : store rows, or :func:`layer_curves`' table (recognised by its ``accuracy`` column).
    tolerance : ``"se"`` (one standard error over seeds of the best layer's mean) or a number in
        accuracy units (e.g. 0.01 for one point).

    Returns
    -------
    DataFrame, one row per (model_key, upstream_task, task, shots, probe): model, us, layers,
    best_layer, best_depth, best_accuracy, best_se, saturation_layer, saturation_depth,
    last_layer, last_depth, last_accuracy, gap (best − last accuracy, ≥ 0).
    """
    curves = table if "accuracy" in table.columns else layer_curves(table)
    curves = curves.sort_values([*KEY, "depth"], kind="stable").reset_index(drop=True)
    groups = curves.groupby(KEY, sort=False, observed=True)
    best = curves.loc[groups["accuracy"].idxmax()].set_index(KEY)  # first best in depth order
    last = groups.tail(1).set_index(KEY)
    if tolerance == "se":
        margin = best["se"]
    else:
        try:
            margin = pd.Series(float(tolerance), index=best.index)
        except (TypeError, ValueError):
            raise ConfigError(f"tolerance {tolerance!r} is neither 'se' nor a number") from None
        if not margin.ge(0).all():
            raise ConfigError(f"tolerance {tolerance} is negative; give 'se' or a number ≥ 0")
    # Earliest layer whose mean is at least best − margin (the best layer itself always is).
    threshold = curves.join(best["accuracy"].sub(margin).rename("threshold"), on=KEY)["threshold"]
    within = curves[curves["accuracy"].to_numpy() >= threshold.to_numpy() - 1e-12]
    early = within.groupby(KEY, sort=False, observed=True).head(1).set_index(KEY)
    out = pd.DataFrame(
        {
            "model": best["model"],
            "us": best["us"],
            "layers": groups.size(),
            "best_layer": best["layer"],
            "best_depth": best["depth"],
            "best_accuracy": best["accuracy"],
            "best_se": best["se"],
            "saturation_layer": early["layer"],
            "saturation_depth": early["depth"],
            "last_layer": last["layer"],
            "last_depth": last["depth"],
            "last_accuracy": last["accuracy"],
        }
    )
    out["gap"] = out["best_accuracy"] - out["last_accuracy"]
    return out.reset_index()


def task_layer_summary(saturation: pd.DataFrame) -> pd.DataFrame:
    """Per (upstream task, task, shots, probe): means over checkpoints of the layer measures.

    With checkpoints of different quality, the mean is over all of them; the columns ``top_*``
    give the measures of the checkpoint with the highest US accuracy (or the first one, when
    no checkpoint has US accuracy).
    """
    groups = saturation.groupby(GROUP, sort=True, observed=True)
    summary = groups.agg(
        checkpoints=("model_key", "count"),
        best_depth=("best_depth", "mean"),
        saturation_depth=("saturation_depth", "mean"),
        gap=("gap", "mean"),
        best_accuracy=("best_accuracy", "mean"),
        last_accuracy=("last_accuracy", "mean"),
    )
    ranked = saturation.assign(_us=saturation["us"].fillna(-1.0)).sort_values("_us", kind="stable")
    top = ranked.groupby(GROUP, sort=True, observed=True).tail(1).set_index(GROUP)
    for col in ("model_key", "best_layer", "saturation_depth", "gap"):
        summary[f"top_{col}"] = top[col]
    return summary.reset_index()


def saturation_correlation(saturation: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation across tasks between layer measures and the fitted e_IR.

    Per (upstream task, shots, probe): each task contributes one pair (mean of the measure over
    its checkpoints, e_IR of its converged fit). The paper's claim predicts a negative
    correlation for ``saturation_depth`` and ``best_depth`` (high e_IR, early peak) and a positive
    one for ``gap``.

    Returns
    -------
    DataFrame: upstream_task, shots, probe, measure, tasks (number of pairs), rho, p_value
    (two-sided; NaN with fewer than 3 tasks or a constant measure).
    """
    summary = task_layer_summary(saturation)
    ok = fits[fits["converged"].astype(bool)][[*GROUP, "e_ir"]]
    joined = summary.merge(ok, on=GROUP)
    rows = []
    for (upstream, shots, probe), part in joined.groupby(
        ["upstream_task", "shots", "probe"], sort=True, observed=True
    ):
        for measure in MEASURES:
            rho, p = _spearman(part[measure].to_numpy(float), part["e_ir"].to_numpy(float))
            rows.append(
                {
                    "upstream_task": upstream,
                    "shots": shots,
                    "probe": probe,
                    "measure": measure,
                    "tasks": len(part),
                    "rho": rho,
                    "p_value": p,
                }
            )
    columns = ["upstream_task", "shots", "probe", "measure", "tasks", "rho", "p_value"]
    return pd.DataFrame(rows, columns=columns)


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan, math.nan
    result = spearmanr(a, b)
    return float(result.statistic), float(result.pvalue)
