"""The report reads at a glance and shows its uncertainty: the summary comes first and is
computed from the tables the sections show, every figure has a caption that says what to read,
long tables are collapsed, undetermined fits have no ceiling drawn, and the page stays small."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tests.results_data import DEPTHS, LAYERS, curve_ds, probe_rows, write_store

# task: (k, alpha, e_IR, index of the best layer); the higher e_IR, the earlier the best layer,
# as the paper's Section 4 claims. "steep" (α far above the others): e_IR undetermined.
TASKS = {
    "t0": (0.8, 2.0, 0.05, 3),
    "t1": (0.8, 2.0, 0.12, 3),
    "t2": (0.8, 2.0, 0.19, 2),
    "t3": (0.8, 2.0, 0.26, 2),
    "t4": (0.8, 2.0, 0.33, 1),
    "t5": (0.8, 2.0, 0.40, 1),
}
STEEP = "steep"
N_CHECKPOINTS = 11
SHOTS = (1, 5)


def peaked_store(folder):
    """Checkpoints on each task's curve (odd ones 0.04 below) at its best layer; the other
    layers 0.05 lower per layer of distance."""
    rows = []
    us_values = np.linspace(0.3, 0.9, N_CHECKPOINTS)
    for i, us in enumerate(us_values):
        for task, (k, alpha, e_ir, peak) in {**TASKS, STEEP: (0.8, 8.0, 0.1, 3)}.items():
            top = float(curve_ds(us, k, alpha, e_ir)) - (0.04 if i % 2 else 0.0)
            for shots in SHOTS:
                for j, (layer, depth) in enumerate(zip(LAYERS, DEPTHS, strict=True)):
                    rows += probe_rows(
                        top - 0.05 * abs(j - peak),
                        spread=0.005,
                        model_key=f"m{i:02d}",
                        upstream_accuracy=float(us),
                        head_wd=(0.0, 0.05)[i % 2],
                        task=task,
                        shots=shots,
                        layer=layer,
                        depth=depth,
                        n_train=shots * 10,
                    )
    return write_store(rows, folder)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from layerprobe.analysis import write_report

    root = tmp_path_factory.mktemp("glance")
    return write_report(peaked_store(root / "res"), root / "out", bootstrap=0)


def _summary(page: str) -> str:
    start = page.index("<h2>Summary</h2>")
    return page[start : page.index("</section>", start)]


def test_summary_comes_before_every_figure_and_table(report):
    page = report.read_text()
    summary = page.index("<h2>Summary</h2>")
    assert summary < page.index("<img") and summary < page.index("<table")
    assert "<table" not in _summary(page) and "<img" not in _summary(page)
    assert page.index("<img") < page.index("<table")  # figures before tables


def test_summary_states_what_the_store_holds_and_the_ceilings_of_the_fit_table(report):
    text = html.unescape(_summary(report.read_text()))
    assert f"{N_CHECKPOINTS} checkpoints, {len(TASKS) + 1} tasks, shots 1-shot, 5-shot" in text
    assert "US accuracy 0.300–0.900" in text
    fits = pd.read_parquet(report.parent / "fits.parquet")
    assert set(fits.loc[fits["task"] == STEEP, "status"]) != {"ok"}
    for shots in SHOTS:
        line = text[text.index(f"Ceilings, {shots}-shot") :].split("\n")[0]
        part = fits[fits["shots"] == shots]
        for r in part.itertuples():
            if r.status == "ok":  # the ceiling and its interval, as the fit table has them
                assert f"{r.task} {r.saturation:.3f} [{r.saturation_lo:.2f}, " in line
            else:  # an undetermined fit: its reason, no number
                assert f"{r.status} ({r.task})" in line and f"{r.task} 0." not in line
        assert f"determine {int((part['status'] == 'ok').sum())} of {len(part)}" in line


def test_summary_names_the_tasks_that_peak_below_the_last_layer(report):
    text = html.unescape(_summary(report.read_text()))
    below = sorted(t for t, (*_, peak) in TASKS.items() if peak < len(LAYERS) - 1)
    for shots in SHOTS:
        line = text[text.index(f"Peak below the last layer, {shots}-shot") :].split("\n")[0]
        line = line[: line.index("</li>")] if "</li>" in line else line
        named = sorted(re.findall(r"(t\d) \(depth", line))
        assert named == below
        for task in below:
            peak = TASKS[task][3]
            gap = 5.0 * (len(LAYERS) - 1 - peak)  # 0.05 per layer of distance, in points
            assert f"{task} (depth {DEPTHS[peak]:.2f}, {gap:.1f} points above the last" in line


def test_summary_gives_the_correlation_with_intervals_and_a_verdict(report):
    from layerprobe.analysis.report import verdict

    text = html.unescape(_summary(report.read_text()))
    layers = pd.read_parquet(report.parent / "layers.parquet")
    assert not layers.empty
    # The constructed tasks peak earlier the higher their e_IR: ρ < 0, intervals below 0.
    for shots in SHOTS:
        line = text[text.index(f"Saturation depth against e_IR, {shots}-shot") :]
        line = line[: line.index("</li>")]
        rho = float(re.search(r"Spearman ρ = ([+-][\d.]+) over (\d+) tasks", line).group(1))
        assert rho < -0.8
        assert f"over {len(TASKS)} tasks" in line and "over checkpoints" in line
        assert "supports the paper's claim" in line
    row = pd.Series(
        dict(
            rho=0.1,
            rho_lo=-0.4,
            rho_hi=0.5,
            rho_ckpt_lo=-0.3,
            rho_ckpt_hi=0.4,
            partial_rho=0.0,
            partial_p=0.9,
        )
    )
    assert verdict(row).startswith("cannot decide")
    above = row.copy()
    above[["rho_lo", "rho_ckpt_lo"]] = 0.2, 0.1
    assert verdict(above).startswith("contradicts")
    below = row.copy()
    below[["rho", "rho_lo", "rho_hi", "rho_ckpt_lo", "rho_ckpt_hi"]] = -0.8, -0.9, -0.5, -0.9, -0.4
    assert verdict(below).startswith("supports") and "not once" in verdict(below)
    below["partial_p"] = 0.01
    assert verdict(below).endswith("also with last-layer accuracy held fixed")


def test_every_figure_has_a_caption_that_says_what_to_read(report):
    page = report.read_text()
    figures = re.findall(
        r'<figure><img src="data:image/png;base64,[^"]+" alt="([^"]+)">'
        r"<figcaption>([^<]+)</figcaption></figure>",
        page,
    )
    pngs = sorted(p.stem for p in (report.parent / "plots").glob("*.png"))
    assert sorted(alt for alt, _ in figures) == pngs and page.count("<figure>") == len(pngs)
    # one figure per question: the per-task figures at the headline shot count (5) only
    names = {
        "depth-vs-e_ir",
        "e_ir-vs-shots",
        "saturation-5-shot",
        "layers-5-shot",
        "knob-pairs-5-shot",
        "correlation-5-shot",
    }
    assert set(pngs) == names
    for alt, caption in figures:
        caption = html.unescape(caption)
        assert alt not in caption and ".png" not in caption and ".svg" not in caption
        assert caption.startswith(("Read", "Each")) and caption.count(". ") == 0
        assert len(caption.split()) >= 12 and caption.endswith(".")
    assert not list((report.parent / "plots").glob("*.svg"))  # SVG only on request


def test_long_tables_are_collapsed_and_every_table_scrolls_inside_its_container(report):
    from layerprobe.analysis.report import LONG_TABLE

    page = report.read_text()
    tables = re.findall(
        r"(<details>)?(?:<summary>[^<]*</summary>)?<div class=\"table\">"
        r"(<table.*?</table>)</div>",
        page,
        re.S,
    )
    assert len(tables) == page.count("<table")  # every table inside its scrolling container
    collapsed = 0
    for details, table in tables:
        rows = table.count("<tr") - 1  # minus the header
        assert bool(details) == (rows > LONG_TABLE)
        collapsed += bool(details)
    assert collapsed >= 2  # the fit table (14 rows) and the per-checkpoint layer table
    assert ".table { max-width: 100%; overflow-x: auto;" in page


def test_undetermined_fits_have_no_ceiling_line_and_say_why(report):
    from layerprobe.analysis import plots
    from layerprobe.analysis.points import checkpoint_points
    from layerprobe.results.read import read_selected

    fits = pd.read_parquet(report.parent / "fits.parquet")
    points = checkpoint_points(read_selected(report.parent.parent / "res"), "pre_logits")
    drawn = {}
    for status in ("ok", "undetermined"):
        row = fits[(fits["status"] == "ok") == (status == "ok")].iloc[0]
        part = points[(points["task"] == row["task"]) & (points["shots"] == row["shots"])]
        ax = Figure().subplots()
        reason = plots._draw_fit(ax, row, part["us"].to_numpy(float), part["ds"].to_numpy(float))
        lines = ax.get_lines()
        curves = [line for line in lines if line.get_linestyle() not in ("None", "")]
        drawn[status] = (reason, [line.get_label() for line in lines], len(ax.patches), curves)
        assert reason == (None if status == "ok" else row["status"])
    reason, labels, bands, curves = drawn["ok"]
    assert any(label.startswith("1 − e_IR") for label in labels) and bands == 1
    fit = next(line for line in curves if line.get_label().startswith("fit ("))
    assert np.max(fit.get_xdata()) == 1.0  # the curve runs to US = 1
    reason, labels, bands, curves = drawn["undetermined"]
    assert curves == [] and bands == 0  # points only: no fitted curve, no ceiling, no band
    assert labels == ["fitted, undetermined"]


def test_saturation_figure_draws_undetermined_panels_without_a_curve(report, monkeypatch):
    from layerprobe.analysis import plots
    from layerprobe.analysis.points import checkpoint_points
    from layerprobe.results.read import read_selected

    fits = pd.read_parquet(report.parent / "fits.parquet")
    points = checkpoint_points(read_selected(report.parent.parent / "res"), "pre_logits")
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, stem: figures.append(fig) or [])
    plots.plot_saturation(points, fits, 5, stem=report.parent / "unused")
    status = fits[fits["shots"] == 5].set_index("task")["status"]
    panels = [ax for ax in figures[0].axes if ax.get_visible()]
    assert len(panels) == len(status)
    for ax in panels:
        task = ax.get_title().split(" (")[0]
        texts = [t.get_text() for t in ax.texts]
        curves = [line for line in ax.get_lines() if line.get_linestyle() not in ("None", "")]
        if status[task] == "ok":
            assert texts == [] and len(curves) == 2  # the fitted curve and the ceiling
        else:
            assert texts == [f"no ceiling: {status[task]}"] and curves == []


def test_layer_figure_draws_a_mean_and_band_per_us_bin_not_a_line_per_checkpoint(
    report, monkeypatch
):
    from layerprobe.analysis import plots
    from layerprobe.analysis.layersat import layer_curves, top_checkpoints
    from layerprobe.results.read import read_selected

    curves = layer_curves(read_selected(report.parent.parent / "res"))
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, stem: figures.append(fig) or [])
    plots.plot_layer_curves(curves, 5, report.parent / "unused")
    panels = [ax for ax in figures[0].axes if ax.get_visible()]
    assert len(panels) == len(TASKS) + 1
    part = curves[(curves["shots"] == 5) & (curves["task"] == "t0")]
    top = top_checkpoints(part.drop_duplicates("model_key"))["model_key"]
    assert 0 < len(top) < N_CHECKPOINTS
    expected = {
        "top third by US accuracy": part[part["model_key"].isin(top)],
        "the other checkpoints": part[~part["model_key"].isin(top)],
    }
    ax = next(ax for ax in panels if ax.get_title().startswith("t0 "))
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == set(expected)  # two lines, not one per checkpoint
    for label, rows in expected.items():
        mean = rows.groupby("depth")["accuracy"].mean()
        np.testing.assert_allclose(lines[label].get_xdata(), mean.index.to_numpy())
        np.testing.assert_allclose(lines[label].get_ydata(), mean.to_numpy())
    assert len(ax.collections) == 2  # a 95 % band per bin


def test_every_shot_count_on_request_and_the_page_says_so(tmp_path):
    from layerprobe.analysis import write_report

    store = peaked_store(tmp_path / "res")
    page = write_report(store, tmp_path / "all", bootstrap=0, all_shots=True)
    pngs = {p.stem for p in (tmp_path / "all" / "plots").glob("*.png")}
    assert {"saturation-1-shot", "saturation-5-shot", "layers-1-shot", "layers-5-shot"} <= pngs
    assert "--all-shots" not in page.read_text()
    default = (report_dir := tmp_path / "default") / "report.html"
    write_report(store, report_dir, bootstrap=0)
    said = "layerprobe report --all-shots also draws the saturation and layer figures at 1-shot"
    assert said in html.unescape(default.read_text())


def test_knob_figure_shows_the_matched_pairs_or_says_there_are_none(tmp_path, monkeypatch):
    from layerprobe.analysis import plots, write_report
    from layerprobe.analysis.pairs import knob_pairs
    from layerprobe.results.read import read_selected
    from tests.results_data import curve_store

    tasks = {"a": (0.9, 2.0, 0.1), "b": (0.8, 1.5, 0.2)}
    paired = curve_store(tmp_path / "paired", tasks, n=8)  # head_wd 0 / 0.1, params of 3 sizes
    effects = knob_pairs(read_selected(paired)).effects
    assert len(effects)
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, stem: figures.append(fig) or [])
    plots.plot_knob_pairs(effects, 5, tmp_path / "unused")
    first = figures[0].axes[1]  # Δ DS accuracy at pre_logits
    assert figures[0].axes[0].get_title().startswith("head_wd 0 → 0.1 (")
    assert first.get_title() == "Δ DS accuracy at pre_logits"
    labels = [t.get_text() for t in figures[0].axes[0].get_yticklabels()]
    points = [bars.lines[0] for bars in first.containers]  # errorbar: its data line first
    points += [line for line in first.lines if line.get_label() == "one pair"]
    shown = {labels[round(y)]: x for line in points for x, y in line.get_xydata()}
    assert shown == pytest.approx(effects.set_index("task")["d_ds"].to_dict())
    monkeypatch.undo()

    page = write_report(paired, tmp_path / "o1", bootstrap=0).read_text()
    assert "knob-pairs-5-shot" in page and "No knob figure" not in page
    rows = read_selected(paired)
    rows = rows[rows["head_wd"] == 0.0]  # no two checkpoints differ in one knob only
    none = write_report(tmp_path / "paired", tmp_path / "o2", table=rows, bootstrap=0)
    text = none.read_text()
    assert "knob-" not in text and "No knob figure: no two checkpoints" in text
    assert not list((tmp_path / "o2" / "plots").glob("knob*"))


def test_report_of_many_tasks_stays_small(tmp_path):
    from layerprobe.analysis import write_report
    from tests.results_data import curve_store

    rng = np.random.default_rng(0)
    tasks = {
        f"task-{i:02d}": (rng.uniform(0.5, 1), rng.uniform(1, 3), rng.uniform(0.02, 0.4))
        for i in range(10)
    }
    store = curve_store(tmp_path / "res", tasks, n=25, us_range=(0.1, 0.95))
    page = write_report(store, tmp_path / "o", bootstrap=0)
    # depth vs e_IR, e_IR vs shots (both: some ceilings are determined over this US range),
    # saturation, layers, the task heat map, the matched head_wd pairs
    assert page.read_text().count("<figure>") == 6
    size = page.stat().st_size
    assert size < 500_000, f"report.html of 10 tasks is {size / 1e6:.2f} MB"


def test_no_determined_ceiling_draws_no_empty_headline_figures(tmp_path):
    from layerprobe.analysis import write_report
    from tests.results_data import curve_store

    # 4 checkpoints over a short US range: both tasks are fitted, neither ceiling is determined
    tasks = {"a": (0.9, 2.0, 0.1), "b": (0.8, 1.5, 0.2)}
    store = curve_store(tmp_path / "res", tasks, n=4, below=0.0, us_range=(0.3, 0.5))
    page = write_report(store, tmp_path / "out", bootstrap=0).read_text()
    assert "the data determine none of the 2 fitted tasks" in page  # the summary says so
    assert "Each point is a task whose data determine e_IR" not in page  # no empty figure
    assert not list((tmp_path / "out" / "plots").glob("depth-vs-e_ir*"))
