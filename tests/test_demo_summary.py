"""The demo's summary says how sure each finding is (fast: a constructed store, no demo run)."""

from __future__ import annotations

import re

from layerprobe.analysis import fit_saturation, knob_pairs, layer_saturation
from layerprobe.pipelines.demo import summary_text
from layerprobe.results import load
from layerprobe.results.read import read_selected
from tests.results_data import curve_store, write_store
from tests.test_results_pairs import pair_rows


def test_summary_prints_intervals_and_names_undetermined_ceilings(tmp_path):
    tasks = {
        "well": (0.9, 2.0, 0.1),  # a clear saturating curve over a wide US range
        "flat": (1e-6, 1.0, 0.6),  # DS does not rise with US: the ceiling is not determined
    }
    table = load(curve_store(tmp_path / "res", tasks, n=25, us_range=(0.1, 0.95)))
    text = summary_text(
        fit_saturation(table), layer_saturation(table), tmp_path, n_ckpt=25, n_tasks=2
    )
    well = next(line for line in text.splitlines() if line.strip().startswith("well"))
    flat = next(line for line in text.splitlines() if line.strip().startswith("flat"))
    lo, hi = map(float, re.search(r"\[([\d.]+), ([\d.]+)\]", well).groups())
    assert lo <= 90.0 <= hi  # the true ceiling, 1 - e_IR = 90 %
    assert "undetermined (" in flat and "%" not in flat.split("undetermined")[1].split("]")[0]
    assert "ceilings the data determine: 1 of 2 tasks" in text
    assert "too few to correlate" in text  # two tasks cannot carry a correlation


def test_summary_says_the_correlation_is_undetermined_when_no_ceiling_is(tmp_path):
    table = load(curve_store(tmp_path / "res", {"flat": (1e-6, 1.0, 0.6)}, n=9))
    text = summary_text(
        fit_saturation(table), layer_saturation(table), tmp_path, n_ckpt=9, n_tasks=1
    )
    assert "ceilings the data determine: 0 of 1 tasks" in text
    assert "Spearman(saturation depth, e_IR): undetermined" in text and "rho =" not in text


def test_summary_reads_matched_head_knob_pairs_with_their_intervals(tmp_path):
    store = write_store(pair_rows(True), tmp_path / "res")  # head_wd 0 -> 0.1 in 6 matched pairs
    table = load(store)
    pairs = knob_pairs(read_selected(store))
    fits = fit_saturation(table, warn=lambda msg: None)
    text = summary_text(fits, layer_saturation(table), tmp_path, n_ckpt=12, n_tasks=2, pairs=pairs)
    line = next(line for line in text.splitlines() if line.startswith("head_wd"))
    # US falls by exactly 2 points in every pair; DS at pre_logits rises by 5 on both tasks; the
    # best layer moves down on 'early' only (on 'late' the difference is exactly 0)
    assert line == (
        "head_wd 0 -> 0.1, 6 matched pairs: US accuracy -2.0 points [-2.0, -2.0]; over 2 tasks, "
        "DS at pre_logits up in 2, down in 0, undecided in 0; best depth up in 0, down in 1, "
        "undecided in 1"
    )


def test_summary_says_when_no_checkpoints_are_matched(tmp_path):
    store = write_store(pair_rows(False), tmp_path / "res")
    table = load(store)
    pairs = knob_pairs(read_selected(store))
    fits = fit_saturation(table, warn=lambda msg: None)
    text = summary_text(fits, layer_saturation(table), tmp_path, n_ckpt=9, n_tasks=2, pairs=pairs)
    assert "matched head-knob pairs: none" in text and "US accuracy" not in text
