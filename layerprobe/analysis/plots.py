"""Figures of the analysis (matplotlib, written as PNG, and as SVG on request).

No pyplot: every figure is a ``matplotlib.figure.Figure`` rendered by the Agg canvas, so nothing
here touches the global backend or needs a display, and figures are freed when they go out of
scope. PNGs are written with a 256-colour palette (a third of the bytes of full colour, the same
look for line art); SVG copies are written only inside ``with vector_copies():``. Dense point
sets (thousands of checkpoints) are rasterised inside the SVG so it stays small. Every function takes
the analysis tables and an output stem (``out/plots/saturation-25shot``) and returns the files it
wrote. Many lines on one axis (22 tasks) get :func:`task_styles`: a colour and a marker each, so
no two tasks look alike.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from layerprobe.analysis.fit import get_form, predict
from layerprobe.analysis.points import GROUP
from layerprobe.runtime.atomic import atomic_path

COLUMNS = 5  # panels per row
CMAP = colormaps["viridis"]
RASTER_ABOVE = 200  # rasterise point/line sets larger than this in SVGs
DPI = 90  # a 5-panel row (16 in) is 1,440 px: the width of the report's page
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
UNDETERMINED = "#b2182b"  # the colour of "the data do not determine this"
_SVG: ContextVar[bool] = ContextVar("layerprobe_svg", default=False)


@contextmanager
def vector_copies(enabled: bool = True) -> Iterator[None]:
    """Inside this block :func:`save` also writes an SVG copy of every figure."""
    token = _SVG.set(enabled)
    try:
        yield
    finally:
        _SVG.reset(token)


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` (256-colour palette), and ``stem.svg`` inside :func:`vector_copies`;
    each to a temporary name renamed when complete. Returns the paths written, PNG first."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)  # fixed margins: no tight-bbox pass (slow)
    buffer.seek(0)
    with Image.open(buffer) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=0)
    paths = [stem.with_name(stem.name + ".png")]
    _replace(paths[0], lambda tmp: small.save(tmp, format="png", optimize=True))
    if _SVG.get():
        paths.append(stem.with_name(stem.name + ".svg"))
        _replace(paths[1], lambda tmp: fig.savefig(tmp, format="svg", dpi=DPI))
    return paths


def _replace(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def task_styles(names) -> dict[str, dict]:
    """A distinct (colour, marker) per name, for figures with a line per task: tab20's dark
    colours, then its light ones, each paired with a marker that differs from the marker of
    the name 10 places away (which shares its hue family)."""
    tab20 = colormaps["tab20"].colors
    palette = [tab20[i] for i in range(0, 20, 2)] + [tab20[i] for i in range(1, 20, 2)]
    ordered = sorted({str(n) for n in names})
    return {
        name: {"color": palette[i % 20], "marker": MARKERS[(i + i // 10) % len(MARKERS)]}
        for i, name in enumerate(ordered)
    }


def panels(
    n: int, *, width: float = 3.2, height: float = 2.8, top: float = 0.95
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


def plot_saturation(
    points: pd.DataFrame, fits: pd.DataFrame, shots: int, *, stem: str | Path
) -> list[Path]:
    """DS against US accuracy for one shot count: a panel per task with every checkpoint and the
    fitted points; where the data determine e_IR (status ``ok``) the fitted curve, the ceiling
    1 − e_IR and its 95 % interval as a band. An undetermined fit is drawn as such: its points
    only (no fitted curve, no ceiling), a grey panel, the reason above it."""
    pts = points[points["shots"] == shots]
    groups = list(pts.groupby(GROUP, sort=True, observed=True))
    fig, axes = panels(len(groups), top=1.45 if len(groups) >= 3 else 1.1)  # room for a legend
    fitted = fits.set_index(GROUP) if len(fits) else None
    for ax, (key, part) in zip(axes, groups, strict=True):
        us, ds = part["us"].to_numpy(float), part["ds"].to_numpy(float)
        ax.scatter(us, ds, s=8, c="0.6", label="checkpoints", rasterized=len(us) > RASTER_ABOVE)
        row = fitted.loc[key] if fitted is not None and key in fitted.index else None
        status = None
        if row is not None and bool(row["converged"]):
            status = _draw_fit(ax, row, us, ds)
        elif row is not None:
            status = "fit did not converge"
        else:
            status = "not fitted (< 3 points)"
        ax.set_title(title(key), fontsize=9)
        if status:  # beside the panel: why there is no ceiling
            ax.text(
                0.5,
                1.0,
                f"no ceiling: {status}",
                transform=ax.transAxes,
                ha="center",
                va="bottom",
                fontsize=8,
                color=UNDETERMINED,
            )
            ax.set_title(title(key) + "\n", fontsize=9)
            ax.set_facecolor("#f6f6f6")
        ax.set_xlabel("US accuracy")
        ax.set_ylabel("DS accuracy")
    _legend_above(fig, axes)
    fig.suptitle(
        f"Saturation of DS accuracy, {shots_label(shots)} (grey panels: e_IR undetermined)"
    )
    return save(fig, stem)


def _draw_fit(ax, row: pd.Series, us: np.ndarray, ds: np.ndarray) -> str | None:
    """Draw one fit; return the reason when the data do not determine e_IR, None when they do.

    Determined (status ``ok``): the fitted points, the fitted curve from the data to 100 % US
    accuracy, the ceiling 1 − e_IR dashed and its 95 % interval as a band. Undetermined: the
    fitted (hull) points in grey and nothing else — no curve, no ceiling, no band: a curve would
    draw the ceiling the data do not give."""
    from layerprobe.analysis.fit import fit_indices

    use = fit_indices(us, ds, row["points"])
    order = use[np.argsort(us[use])]
    status = str(row.get("status", "ok"))
    if status != "ok":
        ax.plot(us[order], ds[order], "o", ms=4, mfc="none", c="0.35", label="fitted, undetermined")
        return status
    ax.plot(us[order], ds[order], "o", ms=4, mfc="none", c="C1", label=f"fitted ({row['points']})")
    theta = [row["k"], row["alpha"], row["e_ir"]][: len(get_form(row["form"]).params)]
    if np.isfinite(theta).all():
        grid = np.linspace(us.min(), 1.0, 200)
        ax.plot(
            grid, predict(row["form"], theta, grid), c="C3", lw=1.5, label=f"fit ({row['form']})"
        )
    lo, hi = row.get("saturation_lo", np.nan), row.get("saturation_hi", np.nan)
    if np.isfinite(lo) and np.isfinite(hi):
        ax.axhspan(lo, hi, color="C3", alpha=0.12, lw=0, label="95 % interval of 1 − e_IR")
    ax.axhline(row["saturation"], ls="--", c="C3", lw=1, label="1 − e_IR (ceiling)")
    return None


def _legend_above(fig: Figure, axes: list) -> None:
    """One legend of every panel's entries in a row under the title, off the data; where the
    figure is too narrow for one row, in the first panel."""
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if not legend:
        return
    if fig.get_figwidth() >= 9.5:
        fig.legend(
            legend.values(),
            legend.keys(),
            loc="upper center",
            ncols=len(legend),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, 1 - 0.42 / fig.get_figheight()),
        )
    else:
        axes[0].legend(legend.values(), legend.keys(), fontsize=6, loc="lower right")


BINS = {  # the bins of :func:`layerprobe.analysis.layersat.layer_bands`: label, colour
    "top": ("top third by US accuracy", "#d95f02"),
    "rest": ("the other checkpoints", "#7570b3"),
    "all": ("all checkpoints (no US accuracy)", "0.2"),
}


def plot_layer_curves(curves: pd.DataFrame, shots: int, stem: str | Path) -> list[Path]:
    """Accuracy against layer depth, a panel per task, aggregated before plotting: per US bin
    (:func:`layerprobe.analysis.layersat.layer_bands`: the top third of checkpoints by US
    accuracy and the rest) the mean over checkpoints as a line and its 95 % interval as a band,
    so the figure costs the same at 10 checkpoints as at 5,000. One checkpoint: its own curve.

    Parameters
    ----------
    curves : :func:`layerprobe.analysis.layersat.layer_curves`' table.
    shots : the shot count drawn.
    stem : output stem.
    """
    from layerprobe.analysis.layersat import layer_bands

    part = curves[curves["shots"] == shots]
    bands = layer_bands(part)
    groups = list(bands.groupby(GROUP, sort=True, observed=True))
    fig, axes = panels(len(groups), height=3.0, top=1.2 if len(groups) >= 3 else 0.95)
    for ax, (key, cell) in zip(axes, groups, strict=True):
        for name, (label, colour) in BINS.items():
            line = cell[cell["bin"] == name]
            if line.empty:
                continue
            x = line["depth"].to_numpy(float)
            n = int(line["checkpoints"].max())
            ax.plot(x, line["accuracy"], "-o", ms=2.5, lw=1.3, c=colour, label=label)
            if n > 1:
                ax.fill_between(
                    x, line["lo"], line["hi"], color=colour, alpha=0.2, lw=0, label="95 % interval"
                )
        ax.set_title(title(key), fontsize=9)
        ax.set_xlabel("layer depth")
        ax.set_ylabel("DS accuracy")
        ax.set_xlim(-0.02, 1.02)
    _legend_above(fig, axes)
    n = part["model_key"].nunique()
    fig.suptitle(
        f"Layer-wise DS accuracy, {shots_label(shots)}: mean over checkpoints per US bin "
        f"({n} checkpoint{'s' * (n != 1)})"
    )
    return save(fig, stem)


def plot_eir_vs_shots(fits: pd.DataFrame, stem: str | Path) -> list[Path]:
    """e_IR of each task against the number of shots (full train split last) with its 95 %
    interval, a panel per (upstream task, probe) across the page, the legend outside the data.
    Only fits whose data determine e_IR (status ``ok``) are drawn; the panel title counts the
    others."""
    good = fits["status"].eq("ok") if "status" in fits.columns else fits["converged"].astype(bool)
    keys = ["upstream_task", "probe"]
    groups = list(fits.groupby(keys, sort=True, observed=True))
    styles = task_styles(fits["task"])
    width, height = 15.0, 4.4
    fig = Figure(figsize=(width, height * len(groups)))
    fig.subplots_adjust(
        left=0.7 / width,
        right=1 - 3.4 / width,
        top=1 - 0.7 / (height * len(groups)),
        bottom=0.5 / (height * len(groups)),
        hspace=0.45,
    )
    axes = fig.subplots(len(groups), 1, squeeze=False).ravel().tolist()
    for ax, ((upstream, probe), every) in zip(axes, groups, strict=True):
        shot_values = sorted(set(every["shots"]), key=lambda s: (s == 0, s))
        where = {s: i for i, s in enumerate(shot_values)}
        part = every[good.loc[every.index]]
        for task, line in part.groupby("task", sort=True, observed=True):
            line = line.sort_values("shots", key=lambda s: s.map(where))
            x = line["shots"].map(where).to_numpy(float)
            y = line["e_ir"].to_numpy(float)
            err = np.abs(np.c_[y - line["e_ir_lo"], line["e_ir_hi"] - y].T)
            ax.errorbar(
                x,
                y,
                yerr=np.nan_to_num(err),
                ms=4,
                capsize=2,
                lw=1,
                label=str(task),
                **styles[str(task)],
            )
        ax.set_xticks(range(len(shot_values)), [shots_label(s) for s in shot_values], fontsize=8)
        ax.set_xlim(-0.3, len(shot_values) - 0.7)
        ax.set_ylabel("e_IR (1 − saturation)")
        left_out = len(every) - len(part)
        note = f"; {left_out} undetermined fits left out" if left_out else ""
        ax.set_title(f"{probe}" + (f", from {upstream}" if upstream else "") + note, fontsize=9)
        if len(part):
            ax.legend(fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Irreducible DS error e_IR against shots (bars: 95 % profile interval)")
    return save(fig, stem)


def plot_depth_vs_eir(
    summary: pd.DataFrame,
    fits: pd.DataFrame,
    stem: str | Path,
    *,
    correlation: pd.DataFrame | None = None,
    saturation: pd.DataFrame | None = None,
) -> list[Path]:
    """Saturation depth against e_IR across tasks, a panel per (upstream task, shots, probe).

    Parameters
    ----------
    summary : :func:`layerprobe.analysis.layersat.task_layer_summary`' table (best_depth: the
        paper's saturation depth, mean over the top checkpoints, and its standard error).
    fits : the fit table (e_ir, e_ir_lo, e_ir_hi, status).
    stem : output stem.
    correlation : :func:`layerprobe.analysis.layersat.saturation_correlation`' table, for the
        ρ printed in each panel (None: none printed).
    saturation : :func:`layerprobe.analysis.layersat.layer_saturation`' table with seed
        intervals (``draws``), for the depth bar of a task summarised over one checkpoint.

    Only tasks whose fit is ``ok`` and whose best layer is not within noise of chance are
    drawn (the pairs the correlation uses), as filled markers labelled with the task;
    horizontal bars: the e_IR interval; vertical bars: ± 1.96 standard errors of the mean
    depth over checkpoints, or the interval from the seeds where one checkpoint is summarised.
    Each panel says how many tasks it leaves out and why.
    """
    good = fits["status"].eq("ok") if "status" in fits.columns else fits["converged"].astype(bool)
    joined = summary.merge(
        fits.assign(_ok=good)[[*GROUP, "e_ir", "e_ir_lo", "e_ir_hi", "_ok"]], on=GROUP
    )
    cells = ["upstream_task", "shots", "probe"]
    groups = list(joined.groupby(cells, sort=True, observed=True))
    order = sorted(groups, key=lambda g: (g[0][0], g[0][1] == 0, g[0][1], g[0][2]))
    fig, axes = panels(len(order), width=4.6, height=4.0, top=1.0)
    styles = task_styles(joined["task"])
    for ax, ((upstream, shots, probe), part) in zip(axes, order, strict=True):
        shown = part[part["_ok"] & ~part["near_chance"].astype(bool)]
        x = shown["e_ir"].to_numpy(float)
        y = shown["best_depth"].to_numpy(float)
        xerr = np.abs(np.c_[x - shown["e_ir_lo"], shown["e_ir_hi"] - x].T)
        half = 1.96 * shown["best_depth_se"].to_numpy(float)
        lo, hi = np.clip(y - half, 0, 1), np.clip(y + half, 0, 1)
        seeds = _seed_interval(saturation, shown)
        lo = np.where(np.isfinite(lo), lo, seeds[0])
        hi = np.where(np.isfinite(hi), hi, seeds[1])
        yerr = np.nan_to_num(np.c_[y - lo, hi - y].T)
        for i, task in enumerate(shown["task"].astype(str)):
            ax.errorbar(
                x[i],
                y[i],
                xerr=np.nan_to_num(xerr[:, i : i + 1]),
                yerr=yerr[:, i : i + 1],
                ms=5,
                capsize=2,
                lw=0.8,
                ls="none",
                **styles[task],
            )
            ax.annotate(task, (x[i], y[i]), xytext=(3, 3), textcoords="offset points", fontsize=6)
        undetermined = int((~part["_ok"]).sum())
        near = int((part["_ok"] & part["near_chance"].astype(bool)).sum())
        lines = [f"{len(shown)} tasks drawn"]
        if undetermined:
            lines.append(f"{undetermined} with e_IR undetermined left out")
        if near:
            lines.append(f"{near} near chance left out")
        rho = _rho_text(correlation, upstream, shots, probe)
        if rho:
            lines.insert(0, rho)
        ax.text(
            0.98,
            0.02,
            "\n".join(lines),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            bbox=dict(fc="white", ec="0.8", alpha=0.85),
        )
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("e_IR (fitted, 95 % interval)")
        ax.set_ylabel("saturation depth (best layer)")
        name = f"{shots_label(shots)}, {probe}" + (f"\nfrom {upstream}" if upstream else "")
        ax.set_title(name, fontsize=9)
    fig.suptitle(
        "Saturation depth against e_IR, one point per task (the paper predicts a falling trend)"
    )
    return save(fig, stem)


def _seed_interval(saturation: pd.DataFrame | None, shown: pd.DataFrame) -> np.ndarray:
    """(2, N) mean seed interval of the best depth over each shown task's top checkpoints (NaN
    without ``saturation`` or its intervals)."""
    nan = np.full((2, len(shown)), np.nan)
    if saturation is None or "best_depth_lo" not in saturation.columns or shown.empty:
        return nan
    from layerprobe.analysis.layersat import top_checkpoints

    means = (
        top_checkpoints(saturation)
        .groupby(GROUP, observed=True)[["best_depth_lo", "best_depth_hi"]]
        .mean()
    )
    found = shown[GROUP].merge(means.reset_index(), on=GROUP, how="left")
    return found[["best_depth_lo", "best_depth_hi"]].to_numpy(float).T


def _rho_text(correlation, upstream, shots, probe) -> str:
    if correlation is None or correlation.empty:
        return ""
    row = correlation[
        (correlation["upstream_task"] == upstream)
        & (correlation["shots"] == shots)
        & (correlation["probe"] == probe)
        & (correlation["measure"] == "best_depth")
    ]
    if row.empty or not np.isfinite(row["rho"].iloc[0]):
        return ""
    r = row.iloc[0]
    interval = f" [{r['rho_lo']:+.2f}, {r['rho_hi']:+.2f}]" if np.isfinite(r["rho_lo"]) else ""
    return f"Spearman ρ = {r['rho']:+.2f}{interval}"


def plot_knob_pairs(effects: pd.DataFrame, shots: int, stem: str | Path) -> list[Path]:
    """The matched knob comparisons of one shot count as forest plots: a row of panels per
    comparison (knob, lower value → higher value), a panel per measure of
    :data:`layerprobe.analysis.pairs.MEASURES` (US accuracy, DS accuracy at pre_logits and at
    the best layer, the best layer's depth), a point per task at the mean paired difference
    (higher minus lower) with its 95 % t-interval (a hollow point: one pair, no interval), and
    the zero line.

    Parameters
    ----------
    effects : :func:`layerprobe.analysis.pairs.knob_pairs`' ``effects`` table (not empty at
        ``shots``).
    shots : the shot count drawn.
    stem : output stem.
    """
    from layerprobe.analysis.pairs import MEASURES

    part = effects[effects["shots"] == shots]
    several = part["upstream_task"].nunique() > 1 or part["probe"].nunique() > 1
    labels = part["task"].astype(str)
    if several:
        labels = labels + " (" + part["probe"].astype(str) + ")"
        labels += np.where(part["upstream_task"].astype(str) != "", " from ", "")
        labels += part["upstream_task"].astype(str)
    part = part.assign(_label=labels.to_numpy())
    comparisons = list(part.groupby(["knob", "low", "high"], sort=True, observed=True))
    names = sorted(set(part["_label"]))
    where = {name: i for i, name in enumerate(names)}
    width, row_height = 15.0, 0.9 + 0.22 * len(names)
    height = row_height * len(comparisons) + 0.6
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=(1.0 + 0.06 * max(map(len, names))) / width,
        right=1 - 0.2 / width,
        top=1 - 0.9 / height,
        bottom=0.5 / height,
        wspace=0.12,
        hspace=0.9 / row_height,
    )
    grid = fig.subplots(len(comparisons), len(MEASURES), squeeze=False, sharey=True)
    for axes, ((knob, low, high), cell) in zip(grid, comparisons, strict=True):
        y = cell["_label"].map(where).to_numpy(float)
        for ax, (measure, label) in zip(axes, MEASURES.items(), strict=True):
            x = cell[measure].to_numpy(float)
            lo, hi = cell[f"{measure}_lo"].to_numpy(float), cell[f"{measure}_hi"].to_numpy(float)
            known = np.isfinite(lo) & np.isfinite(hi)
            ax.axvline(0.0, c="0.5", lw=0.8)
            ax.errorbar(
                x[known],
                y[known],
                xerr=np.abs(np.vstack([x[known] - lo[known], hi[known] - x[known]])),
                fmt="o",
                ms=4,
                c="C0",
                capsize=2,
                lw=1,
                label="mean difference",
            )
            ax.plot(x[~known], y[~known], "o", ms=4, mfc="none", c="C0", label="one pair")
            ax.set_title(f"Δ {label}", fontsize=9)
            ax.set_xlabel("higher minus lower" + (" (0–1)" if "depth" in measure else ""))
        pairs = int(cell["pairs"].max())
        head = f"{knob} {low:g} → {high:g} ({pairs} pair{'s' * (pairs != 1)}): "
        axes[0].set_title(head + axes[0].get_title(), fontsize=9)
    ax0 = grid[0][0]
    ax0.set_yticks(range(len(names)), names, fontsize=8)
    ax0.set_ylim(len(names) - 0.5, -0.5)
    fig.suptitle(
        f"Matched pairs, {shots_label(shots)}: paired differences per task "
        "(95 % t-interval over pairs; hollow: one pair)"
    )
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
                    ax.text(
                        j,
                        i,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if abs(value) > 0.6 else "black",
                    )
    fig.colorbar(image, ax=ax, label="Spearman ρ")
    ax.set_title(f"Rank correlation across checkpoints, {shots_label(shots)}", fontsize=9)
    return save(fig, stem)
