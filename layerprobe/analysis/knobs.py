"""Pre-training knobs: what they do to US and DS accuracy, and what they add beyond US accuracy.

Two questions from the paper:

* Appendix C: head weight decay and head learning rate trade US accuracy against DS accuracy,
  differently per task. :func:`knob_effects` gives mean US and DS accuracy at every value of a
  knob, per task (the knob panels plot it).
* Section 3: conditioned on US accuracy, model size, data fraction and epochs add little about
  DS accuracy. :func:`knob_information` measures that per task with K-fold cross-validation over
  checkpoints: (a) fit Eq. 1 to the training checkpoints (all points, not the hull: here we
  predict each checkpoint, not the best reachable one) and predict the held-out fold from US
  accuracy alone; (b) additionally regress the training residuals of (a) linearly (ordinary
  least squares with an intercept) on the knobs — log10 of params, data fraction and epochs,
  standardised on the training fold — and add that to the prediction. The table compares the
  cross-validated RMSEs; ``gain = 1 − rmse_knobs / rmse_us`` is the fraction of the error the
  knobs remove (near 0 or negative: they add nothing).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from layerprobe.analysis.config import HEAD_KNOBS
from layerprobe.analysis.fit import fit_curve, get_form, predict
from layerprobe.analysis.points import GROUP
from layerprobe.errors import ConfigError

SIZE_KNOBS = ("params", "data_fraction", "epochs")


def knob_effects(points: pd.DataFrame, knobs: tuple[str, ...] = HEAD_KNOBS) -> pd.DataFrame:
    """Mean US and DS accuracy at each value of each knob, per (upstream task, task, shots, probe).

    Parameters
    ----------
    points : :func:`layerprobe.analysis.points.checkpoint_points`' table.

    Returns
    -------
    DataFrame: upstream_task, task, shots, probe, knob, value, checkpoints, us, ds (means, 0–1),
    ds_min, ds_max. Knobs that are unknown, or take one value only, give no rows.
    """
    frames = []
    for knob in knobs:
        known = points[points[knob].notna()]
        if (
            known[knob].nunique() < 2
        ):  # unknown, or one value for every checkpoint: no effect to see
            continue
        stats = (
            known.groupby([*GROUP, knob], sort=True, observed=True)
            .agg(
                checkpoints=("model_key", "nunique"),
                us=("us", "mean"),
                ds=("ds", "mean"),
                ds_min=("ds", "min"),
                ds_max=("ds", "max"),
            )
            .reset_index()
            .rename(columns={knob: "value"})
        )
        stats.insert(len(GROUP), "knob", knob)
        frames.append(stats)
    columns = [*GROUP, "knob", "value", "checkpoints", "us", "ds", "ds_min", "ds_max"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def knob_features(part: pd.DataFrame, knobs: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """(N, K) knob values of the knobs that vary and are known for every checkpoint of ``part``;
    log10 where all values are positive (sizes, fractions and epochs act multiplicatively)."""
    cols, names = [], []
    for knob in knobs:
        values = part[knob].to_numpy(float)
        if np.isnan(values).any() or np.ptp(values) == 0:
            continue
        cols.append(np.log10(values) if (values > 0).all() else values)
        names.append(knob)
    return (np.stack(cols, 1) if cols else np.zeros((len(part), 0))), names


def knob_information(
    points: pd.DataFrame,
    *,
    knobs: tuple[str, ...] = SIZE_KNOBS,
    form: str = "eq1",
    folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Cross-validated error of Eq. 1 on US accuracy alone against Eq. 1 plus the knobs (module doc).

    Returns
    -------
    DataFrame, one row per (upstream task, task, shots, probe): checkpoints, knobs (the ones that
    varied, comma-separated), rmse_us, rmse_knobs (accuracy units), gain. NaN where fewer than
    ``2 · folds`` checkpoints or no knob varies.
    """
    if folds < 2:
        raise ConfigError(f"folds {folds} is below 2; cross-validation needs at least 2 folds")
    form = get_form(form)
    rows = []
    for key, part in points.groupby(GROUP, sort=True, observed=True):
        part = part.sort_values("model_key", kind="stable")
        x, names = knob_features(part, knobs)
        row = dict(zip(GROUP, key, strict=True))
        row.update(checkpoints=len(part), knobs=",".join(names))
        if len(part) < 2 * folds or not names:
            row.update(rmse_us=math.nan, rmse_knobs=math.nan, gain=math.nan)
        else:
            us, ds = part["us"].to_numpy(float), part["ds"].to_numpy(float)
            row.update(_cross_validate(us, ds, x, form, folds, seed))
        rows.append(row)
    columns = [*GROUP, "checkpoints", "knobs", "rmse_us", "rmse_knobs", "gain"]
    return pd.DataFrame(rows, columns=columns)


def _cross_validate(us, ds, x, form, folds: int, seed: int) -> dict:
    """Out-of-fold predictions of both models; their RMSEs and the gain."""
    fold = np.random.default_rng(seed).permutation(len(us)) % folds
    base, full = np.full(len(us), np.nan), np.full(len(us), np.nan)
    for f in range(folds):
        train, test = fold != f, fold == f
        fit = fit_curve(us[train], ds[train], form)
        if not fit.converged:
            continue
        residual = ds[train] - predict(form, fit.theta, us[train])
        mu, sd = x[train].mean(0), x[train].std(0)
        sd[sd == 0] = 1.0
        design = np.c_[np.ones(train.sum()), (x[train] - mu) / sd]
        beta, *_ = np.linalg.lstsq(design, residual, rcond=None)
        base[test] = predict(form, fit.theta, us[test])
        full[test] = base[test] + np.c_[np.ones(test.sum()), (x[test] - mu) / sd] @ beta
    ok = np.isfinite(base)
    if not ok.any():
        return dict(rmse_us=math.nan, rmse_knobs=math.nan, gain=math.nan)
    rmse_us = float(np.sqrt(np.mean((base[ok] - ds[ok]) ** 2)))
    rmse_knobs = float(np.sqrt(np.mean((full[ok] - ds[ok]) ** 2)))
    gain = 1.0 - rmse_knobs / rmse_us if rmse_us > 0 else math.nan
    return dict(rmse_us=rmse_us, rmse_knobs=rmse_knobs, gain=gain)
