"""Layer saturation (best layer, earliest layer within one standard error, gap) and its rank
correlation with the fitted e_IR."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from layerprobe.analysis.layersat import layer_curves, layer_saturation, saturation_correlation
from layerprobe.errors import ConfigError
from layerprobe.results import read_selected
from tests.results_data import DEPTHS, LAYERS, probe_rows, write_store

# Per task: the mean accuracy of each layer and the seed spread (= the standard error with 2 seeds).
TASKS = {
    "early": ([0.60, 0.70, 0.66, 0.62], 0.01),  # peaks at blocks.1
    "within": ([0.695, 0.70, 0.69, 0.71], 0.02),  # blocks.0 is within one SE of the best (last)
}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rows = []
    for task, (accs, spread) in TASKS.items():
        for layer, depth, acc in zip(LAYERS, DEPTHS, accs, strict=True):
            rows += probe_rows(
                acc, spread=spread, task=task, layer=layer, depth=depth, upstream_accuracy=0.7
            )
    return read_selected(write_store(rows, tmp_path_factory.mktemp("layers")))


def by_task(frame: pd.DataFrame) -> dict:
    return {r["task"]: r for r in frame.to_dict(orient="records")}


def test_curves_are_seed_means_with_standard_errors(table):
    curves = layer_curves(table)
    early = curves[curves["task"] == "early"]
    assert early["layer"].tolist() == list(LAYERS)
    assert np.allclose(early["accuracy"], TASKS["early"][0])
    assert np.allclose(early["se"], 0.01)
    assert (early["seeds"] == 2).all()


def test_best_layer_saturation_depth_and_gap(table):
    sat = by_task(layer_saturation(table))
    early, within = sat["early"], sat["within"]
    assert early["best_layer"] == "blocks.1" and early["best_depth"] == pytest.approx(1 / 3)
    assert early["saturation_layer"] == "blocks.1"
    assert early["gap"] == pytest.approx(0.08)
    assert early["last_layer"] == "pre_logits"
    assert within["best_layer"] == "pre_logits" and within["gap"] == pytest.approx(0.0)
    # 0.695 ≥ 0.71 − 0.02: the earliest layer within one standard error is the first one
    assert within["saturation_layer"] == "blocks.0" and within["saturation_depth"] == 0.0


def test_numeric_tolerance(table):
    sat = by_task(layer_saturation(table, tolerance=0.001))
    assert sat["within"]["saturation_layer"] == "pre_logits"
    with pytest.raises(ConfigError):
        layer_saturation(table, tolerance="two")
    with pytest.raises(ConfigError):
        layer_saturation(table, tolerance=-1)


def saturation_table(e_irs, depths, gaps, best_depths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Layer measures of two checkpoints per task (equal), and a fit table with e_IR per task."""
    sat, fits = [], []
    for i, (e_ir, depth, gap, best) in enumerate(
        zip(e_irs, depths, gaps, best_depths, strict=True)
    ):
        key = dict(upstream_task="up", task=f"t{i}", shots=5, probe="ridge")
        for m in ("a", "b"):
            sat.append(
                dict(
                    key,
                    model_key=m,
                    us=0.5,
                    best_layer="x",
                    best_depth=best,
                    saturation_depth=depth,
                    gap=gap,
                    best_accuracy=0.7,
                    last_accuracy=0.7 - gap,
                )
            )
        fits.append(dict(key, converged=True, e_ir=e_ir))
    return pd.DataFrame(sat), pd.DataFrame(fits)


def test_spearman_with_e_ir_gives_known_answers():
    sat, fits = saturation_table(
        e_irs=[0.05, 0.1, 0.2, 0.3, 0.4],
        depths=[1.0, 0.8, 0.6, 0.4, 0.2],  # earlier saturation, higher e_IR: rho = -1
        gaps=[0.0, 0.01, 0.02, 0.05, 0.09],  # rho = +1
        best_depths=[0.1, 0.2, 0.3, 0.5, 0.4],  # ranks 1 2 3 5 4: rho = 1 - 6·2/120 = 0.9
    )
    corr = saturation_correlation(sat, fits).set_index("measure")
    assert corr.loc["saturation_depth", "rho"] == pytest.approx(-1.0)
    assert corr.loc["saturation_depth", "p_value"] < 0.01
    assert corr.loc["gap", "rho"] == pytest.approx(1.0)
    assert corr.loc["best_depth", "rho"] == pytest.approx(0.9)
    assert 0.0 < corr.loc["best_depth", "p_value"] < 0.1
    assert (corr["tasks"] == 5).all()


def test_unconverged_fits_are_left_out_and_too_few_tasks_give_nan():
    sat, fits = saturation_table([0.1, 0.2, 0.3], [0.9, 0.5, 0.1], [0, 0.1, 0.2], [1, 0.5, 0.1])
    fits.loc[2, "converged"] = False
    corr = saturation_correlation(sat, fits)
    assert (corr["tasks"] == 2).all()
    assert corr["rho"].map(math.isnan).all()
