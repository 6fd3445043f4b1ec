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

from layerprobe.analysis.points import GROUP, as_text, checkpoint_info, seed_means
from layerprobe.analysis.rankcorr import (
    bootstrap_rho,
    partial_spearman,
    percentile_interval,
    rowwise_spearman,
    spearman,
)
from layerprobe.errors import ConfigError
from layerprobe.results.frames import first_rows, key_codes

KEY = ["model_key", *GROUP]
MEASURES = ("saturation_depth", "best_depth", "gap")
BLOCK_BYTES = 32 << 20  # resampled values held at once by the checkpoint bootstrap


def layer_curves(
    table: pd.DataFrame | None,
    checkpoints: pd.DataFrame | None = None,
    *,
    means: pd.DataFrame | None = None,
    info: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Accuracy against depth: one row per (checkpoint, upstream task, task, shots, probe, layer).

    ``checkpoints``: the checkpoints' US accuracy when it was read apart from ``table``
    (:func:`~layerprobe.results.read.read_selected_apart`); ``means``, ``info``: ``table``'s
    :func:`seed_means` and :func:`checkpoint_info` when the caller has them (with both, ``table``
    is not read).

    Returns
    -------
    DataFrame: model_key, model, upstream_task, task, shots, probe, layer, depth, accuracy
    (mean over seeds, 0–1), se (standard error over seeds), seeds, us (upstream accuracy or NaN),
    sorted by depth within each curve.
    """
    curves = seed_means(table) if means is None else means
    info = checkpoint_info(table, checkpoints) if info is None else info
    info = info[["model_key", "model", "upstream_accuracy"]]
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
    # The distinct rows first, each with its count: the medians of every row's values are the
    # medians of the distinct values repeated by their counts (:func:`_weighted_median`), and
    # there are a few hundred distinct rows among millions.
    codes, size = key_codes(table, cols)
    if codes is None:
        frame, counts = table[cols], np.ones(len(table), np.int64)
    else:
        first = first_rows(codes)
        frame = table[cols].iloc[first]
        if size <= 4 * len(codes):
            counts = np.bincount(codes, minlength=size)[codes[first]]
        else:
            values, found = np.unique(codes, return_counts=True)
            counts = found[np.searchsorted(values, codes[first])]
        del codes
    frame = frame.reset_index(drop=True)
    frame["task"] = as_text(frame["task"])
    for col in ("n_train", "n_test"):
        frame[col] = frame[col].astype(float) if col in frame.columns else np.nan
    shots = frame["shots"].astype(float)
    frame["chance"] = np.where(
        shots > 0, shots / frame["n_train"].where(frame["n_train"] > 0), np.nan
    )
    frame["count"] = counts
    rows = []
    for (task, shot), group in frame.groupby(["task", "shots"], observed=True, sort=True):
        weights = group["count"].to_numpy()
        rows.append(
            {
                "task": task,
                "shots": shot,
                "chance": _weighted_median(group["chance"].to_numpy(), weights),
                "n_test": _weighted_median(group["n_test"].to_numpy(), weights),
            }
        )
    out = pd.DataFrame(rows, columns=["task", "shots", "chance", "n_test"])
    kinds = {"task": frame["task"].dtype, "shots": frame["shots"].dtype}
    return out.astype(kinds | {"chance": float, "n_test": float})


def _weighted_median(values: np.ndarray, counts: np.ndarray) -> float:
    """The median of ``values`` each repeated ``counts`` times, missing values left out, as
    pandas' grouped median computes it: the middle value, or the mean of the two middle ones
    (``(upper + lower) / 2``, in that order)."""
    keep = ~np.isnan(values)
    values, counts = values[keep], counts[keep]
    n = int(counts.sum())
    if n == 0:
        return np.nan
    order = np.argsort(values, kind="stable")
    values, ends = values[order], np.cumsum(counts[order])

    def kth(k: int) -> float:  # the k-th smallest (0-based) of the repeated values
        return float(values[np.searchsorted(ends, k + 1)])

    if n % 2:
        return kth(n // 2)
    return (kth(n // 2) + kth(n // 2 - 1)) / 2


def top_checkpoints(saturation: pd.DataFrame, top: float = 1 / 3) -> pd.DataFrame:
    """The rows of :func:`layer_saturation`' table whose checkpoint is in the top ``top`` share by
    US accuracy within its (upstream task, task, shots, probe); all rows where US is unknown."""
    us = saturation["us"].astype(float)
    cut = us.groupby([saturation[c] for c in GROUP], observed=True).transform(
        lambda u: u.quantile(1 - top) if u.notna().any() else -np.inf
    )
    return saturation[(us >= cut - 1e-12) | us.isna() & cut.eq(-np.inf)]


def layer_bands(curves: pd.DataFrame, *, top: float = 1 / 3) -> pd.DataFrame:
    """Layer curves aggregated per US-accuracy bin, for a figure that reads at any number of
    checkpoints: the top ``top`` share of checkpoints by US accuracy (as :func:`top_checkpoints`
    picks them for the per-task summaries) and the rest.

    Parameters
    ----------
    curves : :func:`layer_curves`' table (one row per checkpoint, group and layer).
    top : the share of checkpoints in the ``top`` bin, per (upstream task, task, shots, probe).

    Returns
    -------
    DataFrame: upstream_task, task, shots, probe, bin (``top``, ``rest``; ``all`` in a group
    without US accuracy), depth, accuracy (mean over the bin's checkpoints, 0–1), lo, hi (the
    mean ± 1.96 standard errors over checkpoints; NaN from one checkpoint), checkpoints.
    """
    first = curves.drop_duplicates(KEY)
    chosen = top_checkpoints(first, top)[KEY].assign(_top=True)
    rows = curves.merge(chosen, on=KEY, how="left")
    is_top = rows["_top"].eq(True).to_numpy()
    unknown = rows["us"].isna().to_numpy()
    bins = np.where(is_top & unknown, "all", np.where(is_top, "top", "rest"))
    grouped = rows.assign(bin=bins).groupby([*GROUP, "bin", "depth"], observed=True, sort=True)
    out = grouped["accuracy"].agg(["mean", "std", "count"]).reset_index()
    half = 1.96 * out["std"] / np.sqrt(out["count"])  # std is NaN from one checkpoint
    return pd.DataFrame(
        {
            **{c: out[c] for c in [*GROUP, "bin", "depth"]},
            "accuracy": out["mean"],
            "lo": out["mean"] - half,
            "hi": out["mean"] + half,
            "checkpoints": out["count"].astype(int),
        }
    )


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
    used = top_checkpoints(sat, top)
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
    saturation: pd.DataFrame,
    fits: pd.DataFrame,
    *,
    chance: pd.DataFrame | None = None,
    top: float = 1 / 3,
    draws: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman correlation across tasks between layer measures and the fitted e_IR, with
    intervals and a control.

    Per (upstream task, shots, probe): each task contributes one pair — the mean of the measure
    over its top ``top`` share of checkpoints by US accuracy (:func:`task_layer_summary`) and the
    e_IR of its fit — but only tasks whose fit has ``status == "ok"`` (the data determine e_IR;
    tables without a status: converged fits), and with ``chance`` (:func:`chance_levels`) not
    tasks whose best layer is within noise of chance (named in ``left_out``). The paper's claim
    predicts a negative correlation for ``saturation_depth`` and ``best_depth`` (high e_IR, early
    peak) and a positive one for ``gap``.

    Beside ρ and its p: a 95 % percentile bootstrap interval over tasks (``rho_lo``,
    ``rho_hi``: the pairs resampled) and over checkpoints (``rho_ckpt_lo``, ``rho_ckpt_hi``:
    the checkpoints resampled, each task's mean measure recomputed, e_IR held fixed), and the
    partial correlation given the tasks' last-layer accuracy (``partial_rho``, ``partial_p``),
    since e_IR fitted from a short US range mostly restates the last layer's error.

    Returns
    -------
    DataFrame: upstream_task, shots, probe, measure, tasks (number of pairs), rho, rho_lo,
    rho_hi, rho_ckpt_lo, rho_ckpt_hi, p_value, partial_rho, partial_p, undetermined (tasks left
    out because their fit is not ok), left_out (near chance). NaN where too few tasks.
    """
    summary = task_layer_summary(saturation, top=top, chance=chance)
    near = summary[summary["near_chance"]]
    summary = summary[~summary["near_chance"]]
    good = fits["status"].eq("ok") if "status" in fits.columns else fits["converged"].astype(bool)
    ok = fits[good][[*GROUP, "e_ir"]]
    joined = summary.merge(ok, on=GROUP)
    undetermined = summary.merge(fits[~good][GROUP], on=GROUP)
    per_checkpoint = top_checkpoints(saturation, top)
    rows = []
    for (upstream, shots, probe), part in joined.groupby(
        ["upstream_task", "shots", "probe"], sort=True, observed=True
    ):
        where = dict(upstream_task=upstream, shots=shots, probe=probe)
        e_ir = part["e_ir"].to_numpy(float)
        last = part["last_accuracy"].to_numpy(float)
        ckpt = _by_checkpoint(per_checkpoint, where, part["task"])
        for measure in MEASURES:
            x = part[measure].to_numpy(float)
            rho, p = spearman(x, e_ir)
            lo, hi = bootstrap_rho(x, e_ir, draws=draws, seed=seed)
            ckpt_lo, ckpt_hi = _checkpoint_interval(ckpt[measure], e_ir, draws, seed)
            partial, partial_p = partial_spearman(x, e_ir, last)
            rows.append(
                {
                    **where,
                    "measure": measure,
                    "tasks": len(part),
                    "rho": rho,
                    "rho_lo": lo,
                    "rho_hi": hi,
                    "rho_ckpt_lo": ckpt_lo,
                    "rho_ckpt_hi": ckpt_hi,
                    "p_value": p,
                    "partial_rho": partial,
                    "partial_p": partial_p,
                    "undetermined": _names(undetermined, where),
                    "left_out": _names(near, where),
                }
            )
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


CORRELATION_COLUMNS = [
    "upstream_task",
    "shots",
    "probe",
    "measure",
    "tasks",
    "rho",
    "rho_lo",
    "rho_hi",
    "rho_ckpt_lo",
    "rho_ckpt_hi",
    "p_value",
    "partial_rho",
    "partial_p",
    "undetermined",
    "left_out",
]


def _names(frame: pd.DataFrame, where: dict) -> str:
    mask = np.ones(len(frame), dtype=bool)
    for col, value in where.items():
        mask &= (frame[col] == value).to_numpy()
    return ", ".join(sorted(frame.loc[mask, "task"].astype(str)))


def _by_checkpoint(rows: pd.DataFrame, where: dict, tasks: pd.Series) -> dict[str, np.ndarray]:
    """Per measure, a (tasks, checkpoints) matrix of the per-checkpoint values (NaN where a
    checkpoint is not among a task's top share), tasks in the order given."""
    mask = np.ones(len(rows), dtype=bool)
    for col, value in where.items():
        mask &= (rows[col] == value).to_numpy()
    part = rows[mask].assign(task=lambda f: f["task"].astype(str))
    order = list(tasks.astype(str))
    return {
        m: part.pivot_table(index="task", columns="model_key", values=m, aggfunc="mean")
        .reindex(order)
        .to_numpy(float)
        for m in MEASURES
    }


def _checkpoint_interval(matrix: np.ndarray, e_ir: np.ndarray, draws: int, seed: int):
    """Percentile interval of ρ when the checkpoints are resampled: every task's mean measure
    is recomputed over the drawn checkpoints (NaN-aware), e_IR held fixed."""
    n_tasks, n_ckpt = matrix.shape
    if n_tasks < 4 or n_ckpt < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(seed + 1).integers(0, n_ckpt, size=(draws, n_ckpt))
    means = np.empty((draws, n_tasks))
    # A block of draws at a time: (tasks, draws, checkpoints) whole is a GiB at the paper's
    # scale (25 tasks, 4,800 checkpoints, 1,000 draws); each draw's mean is the same either way.
    block = max(1, BLOCK_BYTES // (8 * n_tasks * n_ckpt))
    for start in range(0, draws, block):
        values = matrix[:, idx[start : start + block]]  # (tasks, block, checkpoints)
        present = np.isfinite(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[start : start + block] = (np.where(present, values, 0).sum(2) / present.sum(2)).T
    complete = np.isfinite(means).all(1)
    rho = np.full(draws, np.nan)
    rho[complete] = rowwise_spearman(means[complete], np.broadcast_to(e_ir, means[complete].shape))
    return percentile_interval(rho)
