"""The demo's summary says how sure each finding is (fast: a constructed store, no demo run)."""

from __future__ import annotations

import re

from layerprobe.analysis import fit_saturation, layer_saturation
from layerprobe.pipelines.demo import summary_text
from layerprobe.results import load
from tests.results_data import curve_store


def test_summary_prints_intervals_and_names_undetermined_ceilings(tmp_path):
    tasks = {
        "well": (0.9, 2.0, 0.1),  # a clear saturating curve over a wide US range
        "flat": (1e-6, 1.0, 0.6),  # DS does not rise with US: the ceiling is not determined
    }
    table = load(curve_store(tmp_path / "res", tasks, n=25, us_range=(0.1, 0.95)))
    text = summary_text(fit_saturation(table), layer_saturation(table), tmp_path, 25, 2)
    well = next(line for line in text.splitlines() if line.strip().startswith("well"))
    flat = next(line for line in text.splitlines() if line.strip().startswith("flat"))
    lo, hi = map(float, re.search(r"\[([\d.]+), ([\d.]+)\]", well).groups())
    assert lo <= 90.0 <= hi  # the true ceiling, 1 - e_IR = 90 %
    assert "undetermined (" in flat and "%" not in flat.split("undetermined")[1].split("]")[0]
    assert "ceilings the data determine: 1 of 2 tasks" in text
    assert "too few to correlate" in text  # two tasks cannot carry a correlation


def test_summary_says_the_correlation_is_undetermined_when_no_ceiling_is(tmp_path):
    table = load(curve_store(tmp_path / "res", {"flat": (1e-6, 1.0, 0.6)}, n=9))
    text = summary_text(fit_saturation(table), layer_saturation(table), tmp_path, 9, 1)
    assert "ceilings the data determine: 0 of 1 tasks" in text
    assert "Spearman(saturation depth, e_IR): undetermined" in text and "rho =" not in text
