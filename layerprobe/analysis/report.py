"""The HTML report: every analysis of a results store on one self-contained page.

``write_report(results_dir, out_dir)`` reads the selected-λ rows once, computes the layer
saturation, the saturation fits, their correlation and the knob analyses, writes the tables
(``fits.parquet``, ``layers.parquet``), the figures (``plots/*.png`` and ``.svg``) and
``report.html``. The page embeds its images as base64 data URIs and loads nothing from the
network, so it can be mailed or archived as one file. It works on any store: without upstream
accuracy (one checkpoint probed with ``scan``) it shows the layer analysis and says why there is
no fit.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from layerprobe import __version__
from layerprobe.analysis import plots
from layerprobe.analysis.config import AnalysisConfig
from layerprobe.analysis.fit import fit_points, write_fits
from layerprobe.analysis.knobs import knob_effects, knob_information
from layerprobe.analysis.layersat import (
    chance_levels,
    layer_curves,
    layer_saturation,
    saturation_correlation,
    task_layer_summary,
    top_checkpoints,
)
from layerprobe.analysis.pairs import display, knob_pairs
from layerprobe.analysis.points import GROUP, NO_US, checkpoint_info, checkpoint_points, seed_means
from layerprobe.analysis.similarity_plots import similarity_figures
from layerprobe.analysis.tables import fit_display
from layerprobe.errors import ConfigError, DataError, check_folder
from layerprobe.results.read import (
    ANALYSIS_SCHEMA,
    CHECKPOINT_NUMBERS,
    read_selected_apart,
)
from layerprobe.results.show import check_shots
from layerprobe.results.store import part_files
from layerprobe.runtime.atomic import write_text_atomic

# Every analysis column but val_accuracy (the report shows test accuracy at the selected λ) and
# `selected` (true on every row the report reads).
REPORT_COLUMNS = tuple(c for c in ANALYSIS_SCHEMA.names if c not in ("val_accuracy", "selected"))
PER_CHECKPOINT_ROWS = 200  # above this, the layer table shows per-task means only
LONG_TABLE = 12  # tables with more rows are collapsed in <details>
# The summary's wording of "n of total" and of none (:func:`_listed`).
DETERMINED = (
    "the data determine {n} of {total}",
    "the data determine none of the {total} fitted tasks",
)
BELOW = ("{n} of {total} tasks", "none of {total} tasks")


@dataclass
class Section:
    title: str
    html: list[str] = field(default_factory=list)


def write_report(
    results_dir: str | Path,
    out_dir: str | Path,
    config: AnalysisConfig | None = None,
    *,
    table: pd.DataFrame | None = None,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    skip_bad: bool = False,
    svg: bool = False,
    all_shots: bool = False,
    **options,
) -> Path:
    """Analyse the store below ``results_dir`` and write ``out_dir/report.html``.

    Parameters
    ----------
    results_dir : the results folder (also shown on the page).
    out_dir : output folder (created; an existing file there is a ConfigError).
    config : the analysis options (:class:`~layerprobe.analysis.config.AnalysisConfig`: shots,
        layer, points, holdout_top, bootstrap, form, seed, max_width; as for
        :func:`layerprobe.analysis.fit_saturation`); the report fits one hull per task, so
        ``group_by`` is refused.
    table : the store's rows, when the caller has them already (default: read them).
    warn, progress : where warnings and stage messages go (default: a LayerprobeWarning, nowhere).
    skip_bad : leave out bad result parts with a warning instead of stopping
        (:func:`layerprobe.results.store.read`, the reader every command shares).
    svg : also write an SVG copy of every figure to ``plots/`` (the page embeds the PNGs).
    all_shots : draw the per-task saturation and layer figures at every shot count (default:
        at the largest few-shot count only, :func:`headline_shots`).
    **options : fields of ``config`` to replace (e.g. ``bootstrap=0``).

    Returns
    -------
    Path of ``report.html``. Next to it: ``fits.parquet`` (when anything was fitted),
    ``layers.parquet`` and ``plots/``. The page opens with a summary computed from the same
    tables as the sections below it, then the figures (each with a caption saying what to read
    from it), then the tables (those over :data:`LONG_TABLE` rows collapsed).
    """
    config = AnalysisConfig.build(config, **options)
    if config.group_by is not None:
        raise ConfigError(
            f"the report fits one hull per task; group_by={config.group_by!r} is for "
            "`layerprobe fit --group-by` (fit_saturation)"
        )
    shots, layer = config.shots, config.layer
    out = check_folder(out_dir, "--out")
    say = progress or (lambda message: None)
    say("reading the results")
    checkpoints = None  # the checkpoints' numbers, read once per checkpoint (less memory)
    if table is None:
        table, checkpoints = read_selected_apart(
            results_dir,
            [c for c in REPORT_COLUMNS if c not in CHECKPOINT_NUMBERS],
            skip_bad=skip_bad,
            warn=warn,
            row_cache=not config.no_row_cache,
        )
    check_shots(table, shots)
    if shots:
        table = table[table["shots"].isin(shots)]
    if table.empty:
        raise DataError(f"no selected results in {results_dir} for shots {shots}")
    if checkpoints is not None:  # those the rows of these shots are of
        keys = set(table["model_key"].unique())
        checkpoints = checkpoints[checkpoints["model_key"].isin(keys)]
    out.mkdir(parents=True, exist_ok=True)
    settings = config.settings()

    say("layer saturation")
    # What is made from the rows themselves first; then the rows are let go (a GiB at the
    # paper's scale), and the rest stands on the seed means and the checkpoints' facts.
    settings_section = _settings_section(results_dir, table, settings)
    chance = chance_levels(table)
    info = checkpoint_info(table, checkpoints)
    facts = _store_facts(table, info)
    means = seed_means(table)
    pairs = knob_pairs(table, checkpoints=checkpoints, means=means)
    del table
    curves = layer_curves(None, means=means, info=info)
    saturation = layer_saturation(curves, draws=100, seed=config.seed)
    summary = task_layer_summary(saturation, chance=chance)
    write_fits(saturation, out / "layers.parquet")

    pts, fits, corr = None, None, None
    if info["upstream_accuracy"].notna().any():
        say("saturation fits")
        pts = checkpoint_points(None, layer, warn=warn, means=means, info=info)
        fits = fit_points(pts, config, warn=warn)
        if len(fits):
            write_fits(fits, out / "fits.parquet")
            corr = saturation_correlation(saturation, fits, chance=chance)
    del means

    say("plots")
    with plots.vector_copies(svg):
        tables = (curves, pts, fits, summary, corr, saturation, pairs)
        figures, notes = _figures(out / "plots", *tables, all_shots=all_shots)
        cka = similarity_figures(results_dir, out)  # only when `layerprobe similarity` was run
    # The page, top to bottom: the summary, the figures, then the tables (long ones collapsed).
    # A new section is one function returning a Section (or None) and one line here.
    sections = [
        _summary_section(facts, fits, saturation, summary, corr),
        Section(
            "Figures", [*map(_p, notes), *(_figure(path, caption) for path, caption in figures)]
        ),
        _cka_section(cka),
        _fit_section(fits, corr),
        _layer_section(saturation, summary),
        _knob_section(pts),
        _knob_pairs_section(pairs),
        settings_section,
    ]
    path = out / "report.html"
    write_text_atomic(path, _page([s for s in sections if s is not None], results_dir))
    say(f"wrote {path}")
    return path


# -- sections ------------------------------------------------------------------------------------


def _summary_section(
    facts: str,
    fits: pd.DataFrame | None,
    saturation: pd.DataFrame,
    summary: pd.DataFrame,
    corr: pd.DataFrame | None,
) -> Section:
    """What the store holds and what the data support, from the tables the sections show."""
    section = Section("Summary")
    items = [facts]
    if fits is None:
        items.append(html.escape(NO_US[0].upper() + NO_US[1:] + "."))
    elif fits.empty:
        items.append("No (task, shots) had 3 or more points to fit: no ceilings.")
    else:
        items += _ceilings(fits)
    items += _peaks(saturation, summary)
    if corr is not None:
        items += _correlations(corr)
    section.html.append("<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>")
    return section


def _store_facts(table: pd.DataFrame, info: pd.DataFrame) -> str:
    """The store in one sentence: checkpoints, tasks, shots, seeds and the US range (``info``:
    :func:`~layerprobe.analysis.points.checkpoint_info` of ``table``)."""
    shot_counts = sorted({int(s) for s in table["shots"].unique()}, key=lambda s: (s == 0, s))
    us = info["upstream_accuracy"].astype(float)
    text = (
        f"<b>The store</b>: {_count(table['model_key'].nunique(), 'checkpoint')}, "
        f"{_count(table['task'].nunique(), 'task')}, "
        f"shots {', '.join(map(plots.shots_label, shot_counts))}, "
        f"{_count(table['seed'].nunique(), 'seed')}, "
    )
    if us.notna().any():
        upstream = _few(table["upstream_task"]) if "upstream_task" in table else "–"
        text += (
            f"US accuracy {us.min():.3f}–{us.max():.3f} on {html.escape(upstream)} "
            f"({int(us.notna().sum())} checkpoints with US accuracy)."
        )
    else:
        text += "no US accuracy."
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cells(frame: pd.DataFrame, cells=("upstream_task", "shots", "probe")):
    """(label, part) per (upstream task, shots, probe), shots in order (full split last)."""
    groups = frame.groupby(list(cells), sort=True, observed=True)
    keyed = sorted(groups, key=lambda g: (str(g[0][0]), g[0][1] == 0, g[0][1], str(g[0][2])))
    several = frame["upstream_task"].nunique() > 1 or frame["probe"].nunique() > 1
    for (upstream, shots, probe), part in keyed:
        label = plots.shots_label(shots)
        if several:
            label += f", {probe}" + (f", from {upstream}" if upstream else "")
        yield html.escape(label), part


def _ceilings(fits: pd.DataFrame) -> list[str]:
    good = fits["status"].eq("ok") if "status" in fits.columns else fits["converged"].astype(bool)
    items = []
    for label, part in _cells(fits.assign(_ok=good)):
        ok = part[part["_ok"]].sort_values("saturation", ascending=False)
        head = f"<b>Ceilings, {label}</b> (1 − e_IR, 95 % interval): "
        text = _listed(head, [_ceiling(r) for r in ok.itertuples()], len(part), *DETERMINED)
        rest = part[~part["_ok"]]
        if len(rest):
            reasons = rest.groupby("status", sort=True)["task"].apply(
                lambda t: ", ".join(sorted(map(str, t)))
            )
            text += (
                " Undetermined: "
                + "; ".join(
                    f"{html.escape(str(reason))} ({html.escape(names)})"
                    for reason, names in reasons.items()
                )
                + "."
            )
        items.append(text)
    return items


def _listed(head: str, names: list[str], total: int, some: str, none: str) -> str:
    """One summary line: ``head``, then ``some`` and the ``names`` (or ``none`` without names);
    ``{n}`` is the number of names, ``{total}`` ``total``."""
    if names:  # the names after formatting: a task may be called "{x}"
        return head + some.format(n=len(names), total=total) + ": " + ", ".join(names) + "."
    return head + none.format(total=total) + "."


def _ceiling(r) -> str:
    """A determined ceiling: the task, 1 − e_IR and its interval where there is one."""
    text = f"{html.escape(str(r.task))} {r.saturation:.3f}"
    if np.isfinite(r.saturation_lo) and np.isfinite(r.saturation_hi):
        text += f" [{r.saturation_lo:.2f}, {r.saturation_hi:.2f}]"
    return text


def _peaks(saturation: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Tasks whose best layer, over the top checkpoints by US accuracy, lies below the last
    layer by more than one standard error over seeds (near-chance tasks left out)."""
    top = top_checkpoints(saturation)
    noise = top.groupby(GROUP, observed=True)["best_se"].apply(
        lambda v: float(np.sqrt(np.mean(np.nan_to_num(v.to_numpy(float)) ** 2)))
    )
    rows = summary.join(noise.rename("noise"), on=GROUP)
    items = []
    for label, part in _cells(rows):
        usable = part[~part["near_chance"].astype(bool)]
        below = usable[(usable["gap"] > usable["noise"]) & (usable["best_depth"] < 1 - 1e-9)]
        below = below.sort_values("gap", ascending=False)
        peaks = [
            f"{html.escape(str(r.task))} (depth {r.best_depth:.2f}, {100 * r.gap:.1f} points "
            "above the last layer)"
            for r in below.itertuples()
        ]
        head = f"<b>Peak below the last layer, {label}</b>: "
        text = _listed(head, peaks, len(usable), *BELOW)
        near = part[part["near_chance"].astype(bool)]
        if len(near):
            text += (
                f" Near chance, left out: {html.escape(', '.join(sorted(map(str, near['task']))))}."
            )
        items.append(text)
    return items


def _correlations(corr: pd.DataFrame) -> list[str]:
    items = []
    for label, part in _cells(corr[corr["measure"] == "best_depth"]):
        r = part.iloc[0]
        text = f"<b>Saturation depth against e_IR, {label}</b>: "
        if not np.isfinite(r["rho"]):
            why = (
                "too few to correlate"
                if r["tasks"] < 4
                else "but the saturation depth or e_IR is the same for all of them, so ρ is "
                "undefined"
            )
            text += f"{int(r['tasks'])} tasks with a determined e_IR, {why}: <b>cannot decide</b>."
            items.append(text)
            continue
        text += f"Spearman ρ = {r['rho']:+.2f} over {int(r['tasks'])} tasks"
        if np.isfinite(r["rho_lo"]):
            text += f", 95 % interval [{r['rho_lo']:+.2f}, {r['rho_hi']:+.2f}] over tasks"
        if np.isfinite(r["rho_ckpt_lo"]):
            text += f", [{r['rho_ckpt_lo']:+.2f}, {r['rho_ckpt_hi']:+.2f}] over checkpoints"
        if np.isfinite(r["partial_rho"]):
            text += (
                f"; partial ρ given last-layer accuracy {r['partial_rho']:+.2f} "
                f"(p = {r['partial_p']:.2g})"
            )
        else:
            text += "; partial ρ given last-layer accuracy undefined"
        items.append(text + f": <b>{html.escape(verdict(r))}</b>.")
    return items


def verdict(row: pd.Series) -> str:
    """The plain reading of one :func:`saturation_correlation` row for the paper's claim (a
    negative ρ between saturation depth and e_IR): ``supports`` when every 95 % interval
    (over tasks, over checkpoints) lies below 0, ``contradicts`` when every one lies above 0,
    otherwise ``cannot decide``. A supporting ρ says whether it holds once last-layer accuracy
    is held fixed (partial ρ with p < 0.05), since e_IR can restate the last layer's error."""
    intervals = [
        (row[lo], row[hi])
        for lo, hi in (("rho_lo", "rho_hi"), ("rho_ckpt_lo", "rho_ckpt_hi"))
        if np.isfinite(row[lo]) and np.isfinite(row[hi])
    ]
    if not np.isfinite(row["rho"]) or not intervals:
        return "cannot decide (too few tasks for an interval)"
    if all(hi < 0 for _, hi in intervals):
        if not np.isfinite(row["partial_p"]):
            return (
                "supports the paper's claim, but last-layer accuracy orders the tasks as e_IR "
                "does, so the two cannot be told apart"
            )
        if row["partial_p"] >= 0.05:
            return (
                "supports the paper's claim, but not once last-layer accuracy is held fixed "
                "(it may only restate the last layer's error)"
            )
        return "supports the paper's claim, also with last-layer accuracy held fixed"
    if all(lo > 0 for lo, _ in intervals):
        return "contradicts the paper's claim"
    return "cannot decide (the interval includes 0)"


def _fit_section(fits: pd.DataFrame | None, corr: pd.DataFrame | None) -> Section:
    section = Section("Saturation fit")
    if fits is None:
        section.html.append(_p(NO_US[0].upper() + NO_US[1:] + "."))
        return section
    section.html.append(
        _p(
            "Per downstream task and shot count: e_DS = k · e_US^α + e_IR fitted to the "
            "checkpoints' (US, DS) points (e = 1 − accuracy); 1 − e_IR is the accuracy the task "
            "saturates at. Status ok: the data determine e_IR; otherwise the first reason they "
            "do not (few_points, convex_frontier, k_zero, no_rise, alpha_at_bound, below_data, "
            "wide_interval), and only the interval is shown. Intervals: 95 % profile "
            "likelihood, with the probe noise over seeds in the error model. Prediction error: "
            "RMSE of the hull and the all-points fit, each fitted on the other checkpoints, on "
            "the same held-out frontier points of highest US accuracy (n = how many). Gap: "
            "saturation minus the best checkpoint's DS accuracy."
        )
    )
    if fits.empty:
        section.html.append(_p("No (task, shots) had 3 or more points to fit."))
        return section
    section.html.append(_table(fit_display(fits), "the fit of every task and shot count"))
    section.html.append("<h3>Layer saturation against e_IR (Spearman, across tasks)</h3>")
    section.html.append(
        _p(
            "The paper's Section 4 claim: tasks with a high e_IR peak below the last layer, so "
            "saturation depth and best depth correlate negatively with e_IR and the best−last "
            "gap positively. Only tasks whose e_IR the data determine; intervals: 95 % "
            "bootstrap over tasks and over checkpoints; partial ρ: given last-layer accuracy."
        )
    )
    if corr is not None and len(corr):
        section.html.append(_table(corr, "every measure and shot count"))
    else:
        section.html.append(_p("Too few fitted tasks to correlate."))
    return section


def _layer_section(saturation: pd.DataFrame, summary: pd.DataFrame) -> Section:
    section = Section("Layers")
    section.html.append(
        _p(
            "Per checkpoint and task: the best layer (mean over seeds of the selected-λ test "
            "accuracy), the saturation depth (the earliest layer within one standard error over "
            "seeds of the best) and the gap between the best and the last layer. "
            "Full table: layers.parquet."
        )
    )
    section.html.append(
        "<h3>Per task (means over the top third of checkpoints by US accuracy)</h3>"
    )
    near = summary.loc[summary["near_chance"], "task"].astype(str)
    if len(near):
        section.html.append(
            _p(
                "Best layer within noise of chance (left out of the correlations): "
                + ", ".join(sorted(set(near)))
                + "."
            )
        )
    section.html.append(_table(summary, "per task and shot count"))
    if len(saturation) <= PER_CHECKPOINT_ROWS:
        cols = [
            "model",
            "model_key",
            "task",
            "shots",
            "probe",
            "us",
            "best_layer",
            "best_depth",
            "best_accuracy",
            "saturation_layer",
            "saturation_depth",
            "last_layer",
            "gap",
        ]
        section.html.append("<h3>Per checkpoint</h3>")
        section.html.append(_table(saturation[cols], "per checkpoint, task and shot count"))
    return section


def _knob_section(points: pd.DataFrame | None) -> Section | None:
    if points is None:
        return None
    section = Section("Pre-training knobs")
    info = knob_information(points)
    known = info[info["knobs"] != ""]
    if len(known):
        section.html.append(
            _p(
                "What model size, data fraction and epochs add once US accuracy is known: "
                "cross-validated RMSE (5 folds over checkpoints) of Eq. 1 on US accuracy alone "
                "against Eq. 1 plus a linear model of its residuals on log10 of the knobs. "
                "Gain = 1 − rmse_knobs / rmse_us (about 0: the knobs add nothing)."
            )
        )
        section.html.append(_table(known, "per task and shot count"))
    effects = knob_effects(points)
    if len(effects):
        section.html.append(
            _p(
                "Mean US and DS accuracy at each head weight decay / learning rate, over "
                "checkpoints that may also differ in other knobs: confounded, not an effect of "
                "the knob (read the matched pairs below)."
            )
        )
        section.html.append(_table(effects, "every knob value, task and shot count"))
    if not section.html:
        section.html.append(_p("No pre-training knobs vary in these results."))
    return section


def _knob_pairs_section(result) -> Section:
    """Head-knob effects from matched pairs of checkpoints (:func:`knob_pairs`' result)."""
    section = Section("Head knobs: matched pairs")
    section.html.append(
        _p(
            "Checkpoints that differ in one head knob only, everything recorded else equal: the "
            "mean paired difference (higher knob value minus lower) of US accuracy, DS accuracy "
            "at pre_logits and at the best layer, and the best layer's depth, with 95 % "
            "t-intervals over pairs. A negative depth difference: the knob moves the best "
            "layer down (the paper's Appendix C)."
        )
    )
    section.html += [_p(note) for note in result.notes]
    if len(result.effects):
        section.html.append(_table(display(result.effects)))
    return section


def _settings_section(results_dir, table: pd.DataFrame, options: dict) -> Section:
    section = Section("Settings the rows came from")
    files = part_files(results_dir) if Path(results_dir).is_dir() else []
    facts = {
        "results folder": str(Path(results_dir).resolve()),
        "part files": len(files),
        "selected rows": len(table),
        "checkpoints": table["model_key"].nunique(),
        "models": _few(table["model"]) if "model" in table else "–",
        "upstream tasks": _few(table["upstream_task"]) if "upstream_task" in table else "–",
        "tasks": _few(table["task"]),
        "analysis options": ", ".join(f"{k}={v}" for k, v in options.items()),
        "report written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "layerprobe": __version__,
    }
    section.html.append(_table(pd.DataFrame({"": list(facts), "value": list(facts.values())})))
    section.html.append("<h3>Probe settings per probe × backend × shots</h3>")
    section.html.append(_table(probe_settings(table), "per probe, backend and shot count"))
    return section


def probe_settings(table: pd.DataFrame) -> pd.DataFrame:
    """What the rows were computed with: per probe, backend and shot count, the checkpoints,
    tasks, layers and seeds, the train/test sizes, the chosen λ range and when they were made."""
    agg = {
        "checkpoints": ("model_key", "nunique"),
        "tasks": ("task", "nunique"),
        "layers": ("layer", "nunique"),
        "seeds": ("seed", "nunique"),
        "n_train_min": ("n_train", "min"),
        "n_train_max": ("n_train", "max"),
        "n_test_min": ("n_test", "min"),
        "n_test_max": ("n_test", "max"),
        "chosen_l2_min": ("l2", "min"),
        "chosen_l2_max": ("l2", "max"),
        "created_first": ("created_at", "min"),
        "created_last": ("created_at", "max"),
    }
    if "schema_version" in table.columns:
        agg["schema_version"] = ("schema_version", "max")
    agg = {k: v for k, v in agg.items() if v[0] in table.columns}
    return table.groupby(["probe", "backend", "shots"], observed=True).agg(**agg).reset_index()


def _few(column: pd.Series, n: int = 12) -> str:
    # distinct values first, then text: one conversion per value, not per row
    values = sorted({str(v) for v in pd.unique(column.dropna())} - {""})
    head = ", ".join(values[:n])
    return head + (f" … ({len(values)} in all)" if len(values) > n else "") if values else "–"


# -- figures ------------------------------------------------------------------------------------


def headline_shots(shot_counts) -> int:
    """The shot count the report draws its per-task figures at: the largest few-shot count, or
    the full train split (0) when the store has no other."""
    return max(shot_counts, key=lambda s: (s != 0, s))


def _figures(
    folder: Path,
    curves: pd.DataFrame,
    pts: pd.DataFrame | None,
    fits: pd.DataFrame | None,
    summary: pd.DataFrame,
    corr: pd.DataFrame | None,
    saturation: pd.DataFrame,
    pairs,
    *,
    all_shots: bool = False,
) -> tuple[list[tuple[Path, str]], list[str]]:
    """Write the figures, one per question; return (PNG, caption) pairs in page order and the
    sentences that say what is not drawn. The questions: does saturation depth follow e_IR
    (depth against e_IR, a panel per shot count), how e_IR changes with shots, how DS rises with
    US towards its ceiling per task and where along the depth each task peaks (both at the
    headline shot count, :func:`headline_shots`; every shot count with ``all_shots``), which
    tasks rank the checkpoints alike, and what a head knob does in matched pairs."""
    written: list[tuple[list[Path], str]] = []
    notes: list[str] = []
    shot_counts = sorted(set(curves["shots"]), key=lambda s: (s == 0, s))
    headline = headline_shots(shot_counts)
    fitted = fits is not None and len(fits) > 0
    # The two headline figures draw only determined fits: with none they would be empty axes
    # (the summary says that no ceiling is determined, and why).
    if fitted and bool((fits["status"] == "ok").any()):
        written.append(
            (
                plots.plot_depth_vs_eir(
                    summary, fits, folder / "depth-vs-e_ir", correlation=corr, saturation=saturation
                ),
                "Each point is a task whose data determine e_IR, at its mean saturation depth over "
                "the top third of checkpoints: a falling trend (high e_IR, shallow best layer) is "
                "what the paper's Section 4 predicts, and the bars show how far each point could "
                "move (e_IR: 95 % profile interval; depth: ± 1.96 standard errors over checkpoints, or "
                "the interval from the seeds where one checkpoint is summarised).",
            )
        )
        written.append(
            (
                plots.plot_eir_vs_shots(fits, folder / "e_ir-vs-shots"),
                "Read how each task's irreducible error e_IR changes with more shots (bars: 95 % "
                "interval); only fits whose data determine e_IR are drawn.",
            )
        )
    for shots in shot_counts if all_shots else [headline]:
        name = plots.shots_label(shots).replace(" ", "-")
        label = plots.shots_label(shots)
        if shots == headline and len(shot_counts) > 1:
            label += " (the largest few-shot count)" if shots else ""
        if fitted:
            written.append(
                (
                    plots.plot_saturation(pts, fits, shots, stem=folder / f"saturation-{name}"),
                    f"Read, per task at {label}, how DS accuracy rises with US accuracy towards its "
                    "ceiling (dashed, 95 % band), drawn only where the data determine it; grey "
                    "panels show the fitted points without a curve and say in red why the data do "
                    "not determine the ceiling.",
                )
            )
        written.append(
            (
                plots.plot_layer_curves(curves, shots, folder / f"layers-{name}"),
                f"Read where along the depth each task's accuracy peaks at {label}: the mean over "
                "the top third of checkpoints by US accuracy (orange) against the mean over the "
                "rest (purple), each with its 95 % interval over checkpoints as a band, so a peak "
                "that moves between them moves with pre-training quality.",
            )
        )
    others = [s for s in shot_counts if s != headline]
    if others and not all_shots:
        notes.append(
            f"The per-task figures are drawn at {plots.shots_label(headline)}; e_IR against "
            "shots and saturation depth against e_IR cover every shot count, and "
            "layerprobe report --all-shots also draws the saturation and layer figures at "
            f"{', '.join(map(plots.shots_label, others))}."
        )
    if pts is not None:
        counts = pts.groupby("shots")["task"].nunique()
        several = [s for s in shot_counts if counts.get(s, 0) >= 2]
        if several:  # one heat map: the largest few-shot count (the full split if only that)
            shots = headline_shots(several)
            label = plots.shots_label(shots)
            written.append(
                (
                    plots.plot_task_correlation(
                        pts, shots, folder / f"correlation-{label.replace(' ', '-')}"
                    ),
                    f"Read which tasks rank the checkpoints alike at {label} (red: the same order, "
                    "blue: the opposite) and which follow US accuracy (first row).",
                )
            )
    effects = pairs.effects
    if len(effects):
        shots = headline_shots(set(effects["shots"]))
        label = plots.shots_label(shots)
        written.append(
            (
                plots.plot_knob_pairs(
                    effects, shots, folder / f"knob-pairs-{label.replace(' ', '-')}"
                ),
                f"Read whether raising a head knob moves US accuracy, DS accuracy or the best "
                f"layer's depth at {label}: each point is a task's mean paired difference (higher "
                "value minus lower) over checkpoints matched in everything else recorded, with "
                "its 95 % t-interval, and an interval across the grey zero line cannot tell the "
                "direction.",
            )
        )
    else:
        notes.append(
            "No knob figure: no two checkpoints in this store differ in one head knob only, so "
            "no effect of a knob can be read apart from what changed with it (the section "
            "Head knobs: matched pairs says what was matched)."
        )
    return [(paths[0], caption) for paths, caption in written], notes


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _cka_section(cka: tuple[str, list[tuple[Path, str]]] | None) -> Section | None:
    if cka is None:
        return None
    intro, figures = cka
    return Section("Layer similarity (CKA)", [_p(intro), *(_figure(p, c) for p, c in figures)])


# -- HTML ---------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em;
       color: #222; line-height: 1.4; }
.table { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; max-width: 32em;
         overflow-wrap: break-word; }
th { background: #f0f0f0; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
details { margin: 0.5em 0 1.5em; } summary { cursor: pointer; color: #1a4f8b; }
figure { margin: 1.5em 0; } img { max-width: 100%; height: auto; }
figcaption { font-size: 14px; color: #333; max-width: 60em; }
section#s0 { background: #f7f7f2; border: 1px solid #ddd; padding: 0.2em 1em; }
section#s0 li { margin: 0.3em 0; }
nav a { margin-right: 1em; }
"""


def _page(sections: list[Section], results_dir) -> str:
    nav = " ".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    body = "\n".join(
        f'<section id="s{i}"><h2>{html.escape(s.title)}</h2>\n' + "\n".join(s.html) + "</section>"
        for i, s in enumerate(sections)
    )
    title = f"layerprobe report: {html.escape(str(results_dir))}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{title}</h1><nav>{nav}</nav>\n{body}\n</body></html>\n"
    )


def _table(frame: pd.DataFrame, what: str = "") -> str:
    """The table in a container that scrolls sideways instead of running past the page; with
    more than :data:`LONG_TABLE` rows, collapsed in ``<details>`` (``what`` names it)."""
    body = frame.to_html(
        index=False, escape=True, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0
    )
    body = f'<div class="table">{body}</div>'
    if len(frame) <= LONG_TABLE:
        return body
    label = html.escape(f"Table: {what} ({len(frame)} rows)" if what else f"{len(frame)} rows")
    return f"<details><summary>{label}</summary>{body}</details>"


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"
