"""Figures of the analysis (matplotlib, written as PNG and SVG).

No pyplot: every figure is a ``matplotlib.figure.Figure`` rendered by the Agg canvas, so nothing
here touches the global backend or needs a display, and figures are freed when they go out of
scope. Dense layers (thousands of checkpoints) are rasterised inside the SVG so it stays small.
Every function takes the analysis tables and an output stem (``out/plots/saturation-25shot``)
and returns the files it wrote.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from layerprobe.results.fit import get_form, predict
from layerprobe.results.points import GROUP

COLUMNS = 5  # panels per row
CMAP = colormaps["viridis"]
NO_US = "0.45"  # grey for checkpoints without US accuracy
RASTER_ABOVE = 200  # rasterise point/line sets larger than this in SVGs


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    for path in paths:
        fig.savefig(path, dpi=100)  # fixed margins: no tight-bbox pass (slow with many panels)
    return paths


def panels(
    n: int, width: float = 3.2, height: float = 2.8, top: float = 0.95
) -> tuple[Figure, list]:
    """A figure with ``n`` axes on a grid of at most ``COLUMNS`` per row (extra axes hidden)."""
    cols = max(1, min(COLUMNS, n))
    rows = max(1, math.ceil(n / cols))
    w, h = width * cols, height * rows + top - 0.35
    fig = Figure(figsize=(w, h))
    # Fixed margins in inches (constrained layout costs seconds per figure at 25 panels).
    fig.subplots_adjust(
        left=0.7 / w,
        right=1 - 0.25 / w,
        bottom=0.55 / h,
        top=1 - top / h,
        wspace=0.35,
        hspace=0.75 + (top > 1) * 0.25,
    )
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def title(key: tuple) -> str:
    """Panel title of a (upstream task, task, shots, probe) key."""
    upstream, task, _, probe = key
    text = f"{task} ({probe})"
    return f"{text}\nfrom {upstream}" if upstream else text


def shots_label(shots: int) -> str:
    return "full train split" if int(shots) == 0 else f"{int(shots)}-shot"


def us_colours(us: np.ndarray, norm: Normalize) -> np.ndarray:
    """(N, 4) RGBA colours by US accuracy; grey where it is unknown."""
    us = np.asarray(us, float)
    colours = CMAP(norm(np.nan_to_num(us)))
    colours[~np.isfinite(us)] = (0.45, 0.45, 0.45, 1.0)
    return colours


def us_norm(us: np.ndarray) -> Normalize:
    finite = us[np.isfinite(us)]
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    return Normalize(lo, hi if hi > lo else lo + 1e-9)


def plot_saturation(
    points: pd.DataFrame, fits: pd.DataFrame, shots: int, stem: str | Path
) -> list[Path]:
    """DS against US accuracy for one shot count: a panel per task with every checkpoint, the
    fitted points, the fitted curve and the saturation line 1 − e_IR."""
    pts = points[points["shots"] == shots]
    groups = list(pts.groupby(GROUP, sort=True, observed=True))
    fig, axes = panels(len(groups))
    fitted = fits.set_index(GROUP) if len(fits) else None
    for ax, (key, part) in zip(axes, groups, strict=True):
        us, ds = part["us"].to_numpy(float), part["ds"].to_numpy(float)
        ax.scatter(us, ds, s=8, c="0.6", label="checkpoints", rasterized=len(us) > RASTER_ABOVE)
        row = fitted.loc[key] if fitted is not None and key in fitted.index else None
        if row is not None and bool(row["converged"]):
            _draw_fit(ax, row, us, ds)
        elif row is not None:
            ax.text(0.5, 0.5, "fit did not converge", transform=ax.transAxes, ha="center")
        else:
            ax.text(0.5, 0.5, "not fitted (< 3 points)", transform=ax.transAxes, ha="center")
        ax.set_title(title(key), fontsize=9)
        ax.set_xlabel("US accuracy")
        ax.set_ylabel("DS accuracy")
    if axes:
        axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Saturation of DS accuracy, {shots_label(shots)}")
    return save(fig, stem)


def _draw_fit(ax, row: pd.Series, us: np.ndarray, ds: np.ndarray) -> None:
    from layerprobe.results.fit import fit_indices

    use = fit_indices(us, ds, row["points"])
    order = use[np.argsort(us[use])]
    ax.plot(us[order], ds[order], "o", ms=4, mfc="none", c="C1", label=f"fitted ({row['points']})")
    theta = [row["k"], row["alpha"], row["e_ir"]][: len(get_form(row["form"]).params)]
    grid = np.linspace(us.min(), 1.0, 200)  # from the data to 100 % US accuracy
    ax.plot(grid, predict(row["form"], theta, grid), c="C3", lw=1.5, label=f"fit ({row['form']})")
    if row.get("status", "ok") != "ok":  # undetermined: no ceiling line, the reason instead
        ax.text(0.02, 0.95, f"e_IR undetermined: {row['status']}", transform=ax.transAxes,
                va="top", fontsize=7, color="C3")  # fmt: skip
        return
    ax.axhline(
        row["saturation"], ls="--", c="C3", lw=1, label=f"1 − e_IR = {row['saturation']:.3f}"
    )


def plot_layer_curves(
    curves: pd.DataFrame,
    shots: int,
    stem: str | Path,
    points: pd.DataFrame | None = None,
) -> list[Path]:
    """Accuracy against layer depth, a panel per task, a line per checkpoint coloured by US
    accuracy; with ``points`` (checkpoint points), the DS-vs-US points are overlaid on a top
    US-accuracy axis, as in the paper's Fig. 6. Works for one checkpoint without US accuracy."""
    part = curves[curves["shots"] == shots]
    groups = list(part.groupby(GROUP, sort=True, observed=True))
    fig, axes = panels(len(groups), height=3.0, top=1.2 if points is not None else 0.95)
    norm = us_norm(part["us"].to_numpy(float))
    few = part["model_key"].nunique() <= 8
    for ax, (key, task) in zip(axes, groups, strict=True):
        # One block of rows per checkpoint (sorted by depth): split instead of a groupby.
        task = task.sort_values(["model_key", "depth"], kind="stable")
        keys = task["model_key"].astype(str).to_numpy()
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        xy = np.column_stack([task["depth"].to_numpy(float), task["accuracy"].to_numpy(float)])
        lines = np.split(xy, starts[1:])
        colours = us_colours(task["us"].to_numpy(float)[starts], norm)
        if few:
            labels = task["model"].astype(str).to_numpy()[starts]
            for line, colour, label in zip(lines, colours, labels, strict=True):
                ax.plot(line[:, 0], line[:, 1], "-o", ms=3, c=colour, label=label)
        else:
            coll = LineCollection(lines, colors=colours, linewidths=0.8, alpha=0.6)
            coll.set_rasterized(len(lines) > RASTER_ABOVE)
            ax.add_collection(coll)
            ax.autoscale_view()
        if points is not None:
            _overlay_us(ax, points, key, norm)
        ax.set_title(title(key), fontsize=9)
        ax.set_xlabel("layer depth")
        ax.set_ylabel("DS accuracy")
        ax.set_xlim(-0.02, 1.02)
    if few and axes:
        axes[0].legend(fontsize=7)
    if np.isfinite(part["us"].to_numpy(float)).any() and axes:
        fig.colorbar(ScalarMappable(norm, CMAP), ax=axes, label="US accuracy", shrink=0.8)
    overlay = "; ×: DS against US accuracy (top axis)" if points is not None else ""
    fig.suptitle(f"Layer-wise DS accuracy, {shots_label(shots)} (lines: against depth{overlay})")
    return save(fig, stem)


def _overlay_us(ax, points: pd.DataFrame, key: tuple, norm: Normalize) -> None:
    """DS-vs-US points of the same task on a twin (top) US-accuracy axis."""
    sel = np.ones(len(points), bool)
    for col, value in zip(GROUP, key, strict=True):
        sel &= (points[col] == value).to_numpy()
    pts = points[sel]
    if pts.empty or not pts["us"].notna().any():
        return
    top = ax.twiny()
    us = pts["us"].to_numpy(float)
    top.scatter(
        us, pts["ds"], s=10, marker="x", c=us_colours(us, norm), rasterized=len(us) > RASTER_ABOVE
    )
    top.tick_params(labelsize=7)


def plot_eir_vs_shots(fits: pd.DataFrame, stem: str | Path) -> list[Path]:
    """e_IR of each task against the number of shots (full train split last), with intervals."""
    ok = fits[fits["converged"].astype(bool)]
    keys = ["upstream_task", "probe"]
    groups = list(ok.groupby(keys, sort=True, observed=True))
    fig, axes = panels(len(groups), width=5.0, height=3.6)
    for ax, ((upstream, probe), part) in zip(axes, groups, strict=True):
        shot_values = sorted(set(part["shots"]), key=lambda s: (s == 0, s))
        where = {s: i for i, s in enumerate(shot_values)}
        for i, (task, line) in enumerate(part.groupby("task", sort=True, observed=True)):
            line = line.sort_values("shots", key=lambda s: s.map(where))
            x = line["shots"].map(where).to_numpy(float)
            y = line["e_ir"].to_numpy(float)
            err = np.abs(np.c_[y - line["e_ir_lo"], line["e_ir_hi"] - y].T)
            ax.errorbar(
                x,
                y,
                yerr=np.nan_to_num(err),
                marker="o",
                ms=3,
                capsize=2,
                c=f"C{i % 10}",
                label=task,
            )
        ax.set_xticks(range(len(shot_values)), [shots_label(s) for s in shot_values], fontsize=8)
        ax.set_ylabel("e_IR (1 − saturation)")
        ax.set_title(f"{probe}" + (f", from {upstream}" if upstream else ""), fontsize=9)
        ax.legend(fontsize=6, ncols=2)
    fig.suptitle("Irreducible DS error against shots")
    return save(fig, stem)


def plot_knobs(effects: pd.DataFrame, knob: str, shots: int, stem: str | Path) -> list[Path]:
    """US and DS accuracy against one knob (head weight decay or learning rate), a panel per
    task; the first panel's dashed line is mean US accuracy."""
    part = effects[(effects["knob"] == knob) & (effects["shots"] == shots)]
    groups = list(part.groupby(GROUP, sort=True, observed=True))
    fig, axes = panels(len(groups))
    for ax, (key, line) in zip(axes, groups, strict=True):
        line = line.sort_values("value")
        x = line["value"].to_numpy(float)
        ax.plot(x, line["ds"], "-o", ms=3, c="C0", label="DS")
        ax.fill_between(x, line["ds_min"], line["ds_max"], color="C0", alpha=0.15)
        ax.plot(x, line["us"], "--s", ms=3, c="C1", label="US")
        if (x > 0).all() and len(x) > 1 and x.max() / x.min() > 20:
            ax.set_xscale("log")
        ax.set_title(title(key), fontsize=9)
        ax.set_xlabel(knob)
        ax.set_ylabel("accuracy")
    if axes:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"Accuracy against {knob}, {shots_label(shots)} (mean; band: min–max of DS)")
    return save(fig, stem)


def task_correlation(points: pd.DataFrame, shots: int) -> pd.DataFrame:
    """Spearman correlation between tasks (and US accuracy) across checkpoints, at one shot count."""
    part = points[points["shots"] == shots]
    wide = part.pivot_table(index="model_key", columns="task", values="ds", observed=True)
    us = part.groupby("model_key", observed=True)["us"].first()
    if us.notna().any():
        wide.insert(0, "US accuracy", us)
    return wide.corr(method="spearman")


def plot_task_correlation(points: pd.DataFrame, shots: int, stem: str | Path) -> list[Path]:
    """Heat map of :func:`task_correlation`."""
    corr = task_correlation(points, shots)
    n = len(corr)
    fig = Figure(figsize=(2.5 + 0.45 * n, 2.0 + 0.4 * n), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(corr.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n), corr.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n), corr.index, fontsize=7)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                value = corr.iat[i, j]
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, label="Spearman ρ")
    ax.set_title(f"Rank correlation across checkpoints, {shots_label(shots)}", fontsize=9)
    return save(fig, stem)
