"""Layer saturation where it means something: intervals from the seeds, summaries over the top
third of checkpoints by US accuracy, tasks within noise of chance flagged and left out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layerprobe.analysis.layersat import (
    chance_levels,
    depth_intervals,
    layer_curves,
    layer_saturation,
    saturation_correlation,
    task_layer_summary,
)
from layerprobe.errors import ConfigError
from layerprobe.results import read_selected
from tests.results_data import DEPTHS, LAYERS, probe_rows, write_store


def store(folder, tasks, us_values=(0.1, 0.5, 0.9), spread=0.01):
    """``tasks``: name → per checkpoint index, the accuracies of the 4 layers."""
    rows = []
    for i, u in enumerate(us_values):
        for task, accs in tasks.items():
            for layer, depth, acc in zip(LAYERS, DEPTHS, accs(i), strict=True):
                rows += probe_rows(
                    acc,
                    seeds=(0, 1, 2),
                    spread=spread,
                    task=task,
                    layer=layer,
                    depth=depth,
                    model_key=f"m{i}",
                    upstream_accuracy=u,
                    n_train=50,
                    n_test=200,
                )
    return read_selected(write_store(rows, folder))


def test_depth_intervals_from_the_seeds(tmp_path):
    table = store(
        tmp_path / "r",
        {
            "clear": lambda i: [0.3, 0.8, 0.5, 0.4],  # blocks.1 by 0.3: certain
            "close": lambda i: [0.3, 0.6, 0.605, 0.4],  # blocks.1 and blocks.2 within noise
        },
        us_values=(0.5,),
    )
    sat = layer_saturation(table, draws=400).set_index("task")
    clear, close = sat.loc["clear"], sat.loc["close"]
    assert clear["best_depth"] == pytest.approx(1 / 3)
    assert clear["best_depth_lo"] == clear["best_depth_hi"] == pytest.approx(1 / 3)
    assert close["best_depth"] == pytest.approx(2 / 3)
    assert close["best_depth_lo"] == pytest.approx(1 / 3) and close[
        "best_depth_hi"
    ] == pytest.approx(2 / 3)
    assert close["saturation_depth_lo"] <= close["saturation_depth"] <= close["saturation_depth_hi"]
    again = depth_intervals(layer_curves(table), draws=400, seed=0)
    assert again.set_index("task").loc["close", "best_depth_lo"] == close["best_depth_lo"]


def test_summary_over_the_top_third_and_chance_flag(tmp_path):
    # 9 checkpoints; the best layer moves from the last (low US) to blocks.1 (high US): the
    # summary over the top third (3 checkpoints) says blocks.1, the mean over all would not.
    # 5 shots × 10 classes: chance 0.1; "random" stays at chance at every layer.
    us = np.linspace(0.1, 0.9, 9)
    table = store(
        tmp_path / "r",
        {
            "moves": lambda i: [0.3, 0.8, 0.6, 0.5] if i >= 6 else [0.2, 0.3, 0.4, 0.5],
            "random": lambda i: [0.1, 0.1, 0.102, 0.1],
        },
        us_values=us,
    )
    sat = layer_saturation(table)
    chance = chance_levels(table)
    assert chance.set_index("task").loc["moves", "chance"] == pytest.approx(0.1)
    summary = task_layer_summary(sat, chance=chance).set_index("task")
    moves = summary.loc["moves"]
    assert moves["checkpoints"] == 3 and moves["checkpoints_all"] == 9
    assert moves["us_min"] == pytest.approx(us[6])
    assert moves["best_depth"] == pytest.approx(1 / 3) and moves["best_depth_se"] == 0
    assert not moves["near_chance"]
    assert summary.loc["random", "near_chance"]
    every = task_layer_summary(sat, top=1).set_index("task")
    assert every.loc["moves", "best_depth"] > 0.7  # the near-random checkpoints pull it up
    with pytest.raises(ConfigError, match="top"):
        task_layer_summary(sat, top=0)


def test_tasks_near_chance_are_left_out_of_the_correlation_and_named():
    sat, fits = [], []
    for i, (e_ir, depth) in enumerate([(0.1, 1.0), (0.2, 0.7), (0.3, 0.4), (0.4, 0.1)]):
        key = dict(upstream_task="up", task=f"t{i}", shots=5, probe="ridge")
        best = 0.1 if i == 3 else 0.7  # t3 is at chance
        sat.append(
            dict(
                key,
                model_key="a",
                us=0.5,
                best_layer="x",
                best_depth=depth,
                saturation_depth=depth,
                gap=0.0,
                best_accuracy=best,
                best_se=0.01,
                last_accuracy=best,
            )
        )
        fits.append(dict(key, converged=True, e_ir=e_ir))
    chance = pd.DataFrame(
        {"task": [f"t{i}" for i in range(4)], "shots": 5, "chance": 0.1, "n_test": 1000.0}
    )
    corr = saturation_correlation(pd.DataFrame(sat), pd.DataFrame(fits), chance=chance)
    assert (corr["tasks"] == 3).all() and set(corr["left_out"]) == {"t3"}
    plain = saturation_correlation(pd.DataFrame(sat), pd.DataFrame(fits))
    assert (plain["tasks"] == 4).all() and set(plain["left_out"]) == {""}
