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
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from layerprobe import __version__
from layerprobe.errors import DataError, check_folder
from layerprobe.results import plots
from layerprobe.results.fit import fit_points, write_fits
from layerprobe.results.knobs import HEAD_KNOBS, knob_effects, knob_information
from layerprobe.results.layersat import (
    chance_levels,
    layer_curves,
    layer_saturation,
    saturation_correlation,
    task_layer_summary,
)
from layerprobe.results.points import NO_US, checkpoint_points
from layerprobe.results.read import ANALYSIS_SCHEMA, read_selected
from layerprobe.results.show import check_shots
from layerprobe.results.similarity_plots import similarity_figures
from layerprobe.results.store import part_files
from layerprobe.results.tables import fit_display

# Every analysis column but val_accuracy (the report shows test accuracy at the selected λ).
REPORT_COLUMNS = tuple(c for c in ANALYSIS_SCHEMA.names if c != "val_accuracy")
PER_CHECKPOINT_ROWS = 200  # above this, the layer table shows per-task means only


@dataclass
class Section:
    title: str
    html: list[str] = field(default_factory=list)


def write_report(
    results_dir: str | Path,
    out_dir: str | Path,
    *,
    shots: list[int] | None = None,
    layer: str = "pre_logits",
    points: str = "hull",
    holdout_top: float = 0.1,
    bootstrap: int = 0,
    form: str = "eq1",
    seed: int = 0,
    table: pd.DataFrame | None = None,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    skip_bad: bool = False,
) -> Path:
    """Analyse the store below ``results_dir`` and write ``out_dir/report.html``.

    Parameters
    ----------
    results_dir : the results folder (also shown on the page).
    out_dir : output folder (created; an existing file there is a ConfigError).
    shots, layer, points, holdout_top, bootstrap, form, seed : as for
        :func:`layerprobe.results.fit_saturation`.
    table : the store's rows, when the caller has them already (default: read them).
    warn, progress : where warnings and stage messages go (default: stderr, nowhere).
    skip_bad : leave out bad result parts with a warning instead of stopping
        (:func:`layerprobe.results.store.read`, the reader every command shares).

    Returns
    -------
    Path of ``report.html``. Next to it: ``fits.parquet`` (when anything was fitted),
    ``layers.parquet`` and ``plots/``.
    """
    out = check_folder(out_dir, "--out")
    say = progress or (lambda message: None)
    say("reading the results")
    if table is None:
        table = read_selected(results_dir, columns=REPORT_COLUMNS, skip_bad=skip_bad, warn=warn)
    check_shots(table, shots)
    if shots:
        table = table[table["shots"].isin(shots)]
    if table.empty:
        raise DataError(f"no selected results in {results_dir} for shots {shots}")
    out.mkdir(parents=True, exist_ok=True)
    options = dict(
        layer=layer, points=points, holdout_top=holdout_top, bootstrap=bootstrap, form=form
    )

    say("layer saturation")
    curves = layer_curves(table)
    saturation = layer_saturation(curves, draws=100, seed=seed)
    chance = chance_levels(table)
    write_fits(saturation, out / "layers.parquet")
    sections = [_layer_section(saturation, chance)]

    pts, fits = None, None
    if table["upstream_accuracy"].notna().any():
        say("saturation fits")
        pts = checkpoint_points(table, layer, warn=warn)
        fits = fit_points(pts, form, points, holdout_top, bootstrap, seed, warn, layer=layer)
        if len(fits):
            write_fits(fits, out / "fits.parquet")
        sections.insert(0, _fit_section(fits, saturation, chance))
        sections.append(_knob_section(pts))
    else:
        sections.insert(0, Section("Saturation fit", [_p(NO_US[0].upper() + NO_US[1:] + ".")]))

    sections.append(_knob_pairs_section(table))
    say("plots")
    figures = _figures(out / "plots", curves, pts, fits)
    sections.append(Section("Figures", [_figure(path) for path in figures]))
    cka = similarity_figures(results_dir, out)  # only when `layerprobe similarity` was run
    if cka is not None:
        sections.append(Section("Layer similarity (CKA)", [_p(cka[0]), *map(_figure, cka[1])]))
    sections.append(_settings_section(results_dir, table, options))
    path = out / "report.html"
    _write_text(path, _page(sections, results_dir))
    say(f"wrote {path}")
    return path


# -- sections ------------------------------------------------------------------------------------


def _fit_section(fits: pd.DataFrame, saturation: pd.DataFrame, chance=None) -> Section:
    section = Section("Saturation fit")
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
    section.html.append(_table(fit_display(fits)))
    corr = saturation_correlation(saturation, fits, chance=chance)
    section.html.append("<h3>Layer saturation against e_IR (Spearman, across tasks)</h3>")
    section.html.append(
        _p(
            "The paper's Section 4 claim: tasks with a high e_IR peak below the last layer, so "
            "saturation depth and best depth correlate negatively with e_IR and the best−last "
            "gap positively."
        )
    )
    section.html.append(_table(corr) if len(corr) else _p("Too few fitted tasks to correlate."))
    return section


def _layer_section(saturation: pd.DataFrame, chance=None) -> Section:
    section = Section("Layers")
    section.html.append(
        _p(
            "Per checkpoint and task: the best layer (mean over seeds of the selected-λ test "
            "accuracy), the saturation depth (the earliest layer within one standard error over "
            "seeds of the best) and the gap between the best and the last layer. "
            "Full table: layers.parquet."
        )
    )
    summary = task_layer_summary(saturation, chance=chance)
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
    section.html.append(_table(summary))
    if len(saturation) <= PER_CHECKPOINT_ROWS:
        cols = [
            "model", "model_key", "task", "shots", "probe", "us", "best_layer", "best_depth",
            "best_accuracy", "saturation_layer", "saturation_depth", "last_layer", "gap",
        ]  # fmt: skip
        section.html.append("<h3>Per checkpoint</h3>")
        section.html.append(_table(saturation[cols]))
    return section


def _knob_section(points: pd.DataFrame) -> Section:
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
        section.html.append(_table(known))
    effects = knob_effects(points)
    if len(effects):
        section.html.append(
            _p("Mean US and DS accuracy at each head weight decay / learning rate.")
        )
        section.html.append(_table(effects))
    if not section.html:
        section.html.append(_p("No pre-training knobs vary in these results."))
    return section


def _knob_pairs_section(table: pd.DataFrame) -> Section:
    """Head-knob effects from matched pairs of checkpoints (:mod:`layerprobe.results.pairs`)."""
    from layerprobe.results.pairs import display, knob_pairs

    result = knob_pairs(table)
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
    section.html.append(_table(probe_settings(table)))
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
    values = sorted(str(v) for v in pd.unique(column.dropna().astype(str)) if str(v))
    head = ", ".join(values[:n])
    return head + (f" … ({len(values)} in all)" if len(values) > n else "") if values else "–"


# -- figures ------------------------------------------------------------------------------------


def _figures(folder: Path, curves, pts, fits) -> list[Path]:
    """Write every figure; return the PNGs (the SVGs lie next to them)."""
    written = []
    shot_counts = sorted(set(curves["shots"]), key=lambda s: (s == 0, s))
    for shots in shot_counts:
        name = plots.shots_label(shots).replace(" ", "-")
        if fits is not None and len(fits):
            written += plots.plot_saturation(pts, fits, shots, folder / f"saturation-{name}")
        written += plots.plot_layer_curves(curves, shots, folder / f"layers-{name}", pts)
    if fits is not None and fits["converged"].any():
        written += plots.plot_eir_vs_shots(fits, folder / "e_ir-vs-shots")
    if pts is not None:
        effects = knob_effects(pts, HEAD_KNOBS)
        for knob in sorted(set(effects["knob"])):
            for shots in shot_counts:
                written += plots.plot_knobs(effects, knob, shots, folder / f"knob-{knob}-{shots}")
        for shots in shot_counts:
            if pts[pts["shots"] == shots]["task"].nunique() >= 2:
                name = plots.shots_label(shots).replace(" ", "-")
                written += plots.plot_task_correlation(pts, shots, folder / f"correlation-{name}")
    return [p for p in written if p.suffix == ".png"]


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.stem)
    svg = html.escape(path.with_suffix(".svg").name)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
        f"<figcaption>{name} (vector version: plots/{svg})</figcaption></figure>"
    )


# -- HTML ---------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { font-size: 12px; color: #555; }
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


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(
        index=False, escape=True, na_rep="–", float_format=lambda v: f"{v:.4g}", border=0
    )


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
