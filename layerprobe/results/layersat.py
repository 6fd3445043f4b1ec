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


def layer_saturation(
    table: pd.DataFrame, tolerance: float | str = "se", *, draws: int = 0, seed: int = 0
) -> pd.DataFrame:
    """Best layer, saturation depth and best-minus-last gap of every curve.

    Parameters
    ----------
    table : store rows, or :func:`layer_curves`' table (recognised by its ``accuracy`` column).
    tolerance : ``"se"`` (one standard error over seeds of the best layer's mean) or a number in
        accuracy units (e.g. 0.01 for one point).
    draws : with > 0, 95 % intervals of the best depth (the paper's saturation depth: the
        earliest layer that reaches the best) and of the saturation depth from the seeds
        (:func:`depth_intervals`); 0: none.
    seed : seed of those draws.

    Returns
    -------
    DataFrame, one row per (model_key, upstream_task, task, shots, probe): model, us, layers,
    best_layer, best_depth, best_accuracy, best_se, saturation_layer, saturation_depth,
    last_layer, last_depth, last_accuracy, gap (best − last accuracy, ≥ 0); with ``draws``
    also best_depth_lo, best_depth_hi, saturation_depth_lo, saturation_depth_hi.
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
    out = out.reset_index()
    if draws:
        out = out.merge(depth_intervals(curves, draws=draws, seed=seed), on=KEY, how="left")
    return out


def depth_intervals(
    curves: pd.DataFrame, *, draws: int = 200, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Intervals from the seeds for the best depth and the saturation depth of every curve.

    Each layer's mean accuracy is redrawn ``draws`` times from N(mean, se²) (se: its standard
    error over seeds; layers drawn independently, which overstates the noise of differences
    between layers whose seeds share their shots: the intervals err on the wide side); each draw
    gives a best depth (the earliest layer reaching the draw's best) and a saturation depth (the
    earliest layer within one drawn standard error of it). With one seed (se = 0) the interval
    is the point.

    Parameters
    ----------
    curves : :func:`layer_curves`' table.

    Returns
    -------
    DataFrame, one row per curve (model_key, upstream_task, task, shots, probe):
    best_depth_lo, best_depth_hi, saturation_depth_lo, saturation_depth_hi (depth in [0, 1]).
    """
    curves = curves.sort_values([*KEY, "depth"], kind="stable").reset_index(drop=True)
    codes = curves.groupby(KEY, sort=False, observed=True).ngroup().to_numpy()
    position = curves.groupby(KEY, sort=False, observed=True).cumcount().to_numpy()
    n_curves, width = int(codes.max()) + 1 if len(codes) else 0, int(position.max()) + 1
    acc = np.full((n_curves, width), -np.inf)
    se = np.zeros((n_curves, width))
    depth = np.full((n_curves, width), np.nan)
    acc[codes, position] = curves["accuracy"].to_numpy(float)
    se[codes, position] = np.nan_to_num(curves["se"].to_numpy(float))
    depth[codes, position] = curves["depth"].to_numpy(float)
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2 * 100
    out = np.zeros((n_curves, 4))
    step = max(1, 2_000_000 // max(draws * width, 1))  # curves per batch: bounded temporaries
    for start in range(0, n_curves, step):
        sl = slice(start, start + step)
        a = acc[sl][None] + se[sl][None] * rng.standard_normal((draws, *acc[sl].shape))
        best = np.argmax(a, axis=2)  # (draws, C): the first best in depth order
        rows = np.arange(a.shape[1])[None, :]
        best_acc = np.take_along_axis(a, best[..., None], 2)[..., 0]
        best_se = se[sl][rows, best]
        early = np.argmax(a >= (best_acc - best_se)[..., None] - 1e-12, axis=2)
        d = depth[sl]
        for j, idx in enumerate((best, early)):
            values = d[rows, idx]
            out[sl, 2 * j] = np.percentile(values, tail, axis=0)
            out[sl, 2 * j + 1] = np.percentile(values, 100 - tail, axis=0)
    keys = curves.groupby(KEY, sort=False, observed=True).head(1)[KEY].reset_index(drop=True)
    names = ["best_depth_lo", "best_depth_hi", "saturation_depth_lo", "saturation_depth_hi"]
    return pd.concat([keys, pd.DataFrame(out, columns=names)], axis=1)


def chance_levels(table: pd.DataFrame) -> pd.DataFrame:
    """Chance accuracy per (task, shots): 1 / classes, the classes read from the few-shot train
    size (``n_train`` = shots × classes); NaN for the full train split (shots 0) or without
    ``n_train``.

    Returns
    -------
    DataFrame: task, shots, chance (0–1), n_test (median test rows; NaN when unknown).
    """
    cols = [c for c in ("task", "shots", "n_train", "n_test") if c in table.columns]
    frame = table[cols].copy()
    frame["task"] = frame["task"].astype(str)
    for col in ("n_train", "n_test"):
        frame[col] = frame[col].astype(float) if col in frame.columns else np.nan
    shots = frame["shots"].astype(float)
    frame["chance"] = np.where(
        shots > 0, shots / frame["n_train"].where(frame["n_train"] > 0), np.nan
    )
    out = frame.groupby(["task", "shots"], observed=True, sort=True).agg(
        chance=("chance", "median"), n_test=("n_test", "median")
    )
    return out.reset_index()


def task_layer_summary(
    saturation: pd.DataFrame, *, top: float = 1 / 3, chance: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (upstream task, task, shots, probe): the layer measures over the checkpoints of
    highest US accuracy, not over near-random ones.

    Parameters
    ----------
    saturation : :func:`layer_saturation`' table.
    top : the share of checkpoints (highest US accuracy, per group) summarised: those at or
        above the (1 − top) quantile of US accuracy; 1: all; with no US accuracy, all.
    chance : :func:`chance_levels`' table, to flag tasks whose best layer is within noise of
        chance (default: no flag).

    Returns
    -------
    DataFrame: upstream_task, task, shots, probe, checkpoints (summarised), checkpoints_all,
    us_min (the lowest US accuracy summarised), best_depth, best_depth_se, saturation_depth,
    saturation_depth_se (means and standard errors over the summarised checkpoints), gap,
    best_accuracy, last_accuracy (means), top_model_key, top_best_layer, top_saturation_depth,
    top_gap (the checkpoint of highest US accuracy), chance, near_chance (the summarised
    checkpoints' mean best accuracy is within two standard errors — seeds and test-set
    sampling — of chance; such a task is left out of :func:`saturation_correlation`).
    """
    if not 0 < top <= 1:
        raise ConfigError(f"top {top} is not a share in (0, 1]; e.g. 1/3 for the top third")
    sat = saturation.copy()
    us = sat["us"].astype(float)
    cut = us.groupby([sat[c] for c in GROUP], observed=True).transform(
        lambda u: u.quantile(1 - top) if u.notna().any() else -np.inf
    )
    used = sat[(us >= cut - 1e-12) | us.isna() & cut.eq(-np.inf)]
    groups = used.groupby(GROUP, sort=True, observed=True)
    summary = groups.agg(
        checkpoints=("model_key", "count"),
        us_min=("us", "min"),
        best_depth=("best_depth", "mean"),
        best_depth_se=("best_depth", "sem"),
        saturation_depth=("saturation_depth", "mean"),
        saturation_depth_se=("saturation_depth", "sem"),
        gap=("gap", "mean"),
        best_accuracy=("best_accuracy", "mean"),
        last_accuracy=("last_accuracy", "mean"),
    )
    summary.insert(1, "checkpoints_all", sat.groupby(GROUP, sort=True, observed=True).size())
    ranked = sat.assign(_us=us.fillna(-1.0)).sort_values("_us", kind="stable")
    top_rows = ranked.groupby(GROUP, sort=True, observed=True).tail(1).set_index(GROUP)
    for col in ("model_key", "best_layer", "saturation_depth", "gap"):
        summary[f"top_{col}"] = top_rows[col]
    summary = summary.reset_index()
    summary["chance"], summary["near_chance"] = np.nan, False
    if chance is not None and len(summary):
        level = chance.assign(task=chance["task"].astype(str))
        merged = (
            summary[["task", "shots"]]
            .astype({"task": str})
            .merge(level, on=["task", "shots"], how="left")
        )
        p = merged["chance"].to_numpy(float)
        n_test = merged["n_test"].to_numpy(float)
        best_se = groups["best_se"].apply(lambda v: float(np.sqrt(np.mean(v**2)))).to_numpy()
        sampling = np.where(n_test > 0, p * (1 - p) / n_test, 0.0)
        noise = np.sqrt(best_se**2 + np.nan_to_num(sampling))
        summary["chance"] = p
        summary["near_chance"] = np.isfinite(p) & (summary["best_accuracy"] - p <= 2 * noise)
    return summary


def saturation_correlation(
    saturation: pd.DataFrame, fits: pd.DataFrame, *, chance: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Spearman correlation across tasks between layer measures and the fitted e_IR.

    Per (upstream task, shots, probe): each task contributes one pair (mean of the measure over
    its checkpoints, e_IR of its converged fit). The paper's claim predicts a negative
    correlation for ``saturation_depth`` and ``best_depth`` (high e_IR, early peak) and a positive
    one for ``gap``.

    The measures are summarised over the top third of checkpoints by US accuracy
    (:func:`task_layer_summary`); with ``chance`` (:func:`chance_levels`), tasks whose best layer
    is within noise of chance are left out and named in ``left_out``.

    Returns
    -------
    DataFrame: upstream_task, shots, probe, measure, tasks (number of pairs), rho, p_value
    (two-sided; NaN with fewer than 3 tasks or a constant measure), left_out.
    """
    summary = task_layer_summary(saturation, chance=chance)
    near = summary[summary["near_chance"]]
    summary = summary[~summary["near_chance"]]
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
                    "left_out": ", ".join(
                        sorted(
                            near.loc[
                                (near["upstream_task"] == upstream)
                                & (near["shots"] == shots)
                                & (near["probe"] == probe),
                                "task",
                            ].astype(str)
                        )
                    ),
                }
            )
    columns = ["upstream_task", "shots", "probe", "measure", "tasks", "rho", "p_value", "left_out"]
    return pd.DataFrame(rows, columns=columns)


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan, math.nan
    result = spearmanr(a, b)
    return float(result.statistic), float(result.pvalue)
