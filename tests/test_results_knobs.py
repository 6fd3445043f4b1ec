"""Pre-training knobs: mean accuracy per head weight decay, and what size/data/epochs add to
predicting DS accuracy once US accuracy is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from layerprobe.analysis.knobs import knob_effects, knob_information
from tests.results_data import curve_ds


def points(us, ds, **knobs) -> pd.DataFrame:
    n = len(us)
    frame = pd.DataFrame(
        dict(
            upstream_task="up",
            task="t",
            shots=5,
            probe="ridge",
            model_key=[f"m{i:03d}" for i in range(n)],
            layer="pre_logits",
            us=us,
            ds=ds,
        )
    )
    for knob in ("params", "data_fraction", "epochs", "head_wd", "head_lr"):
        frame[knob] = knobs.get(knob, np.full(n, np.nan))
    return frame


def test_knob_effects_are_means_per_value():
    pts = points(
        us=[0.5, 0.7, 0.6, 0.8],
        ds=[0.3, 0.5, 0.2, 0.4],
        head_wd=[0.0, 0.0, 1.0, 1.0],
    )
    effects = knob_effects(pts)
    assert set(effects["knob"]) == {"head_wd"}  # head_lr is unknown everywhere
    wd = effects.set_index("value")
    assert wd.loc[0.0, "us"] == pytest.approx(0.6) and wd.loc[0.0, "ds"] == pytest.approx(0.4)
    assert wd.loc[1.0, "us"] == pytest.approx(0.7) and wd.loc[1.0, "ds"] == pytest.approx(0.3)
    assert wd.loc[1.0, "ds_min"] == 0.2 and wd.loc[1.0, "checkpoints"] == 2


def ladder(n=90, seed=0):
    rng = np.random.default_rng(seed)
    us = rng.uniform(0.3, 0.9, n)
    params = 10.0 ** (5 + np.arange(n) % 3)
    epochs = np.array([7, 14, 21])[(np.arange(n) // 3) % 3].astype(float)
    return rng, us, params, epochs


def test_knobs_that_carry_information_are_found():
    rng, us, params, epochs = ladder()
    ds = curve_ds(us, 0.7, 1.8, 0.2) + 0.04 * (np.log10(params) - 6) + rng.normal(0, 0.003, len(us))
    info = knob_information(points(us, ds, params=params, epochs=epochs)).iloc[0]
    assert info["knobs"] == "params,epochs"
    assert info["gain"] > 0.8  # the knobs remove most of the error
    assert info["rmse_knobs"] < 0.006


def test_knobs_that_carry_no_information_add_nothing():
    rng, us, params, epochs = ladder(seed=1)
    ds = curve_ds(us, 0.7, 1.8, 0.2) + rng.normal(0, 0.01, len(us))
    info = knob_information(points(us, ds, params=params, epochs=epochs)).iloc[0]
    assert info["gain"] < 0.05
    assert info["rmse_us"] == pytest.approx(0.01, rel=0.3)


def test_no_varying_knob_gives_nan():
    _, us, _, _ = ladder()
    info = knob_information(points(us, curve_ds(us, 0.7, 1.8, 0.2), params=np.full(len(us), 1e6)))
    assert info.iloc[0]["knobs"] == "" and math.isnan(info.iloc[0]["gain"])
