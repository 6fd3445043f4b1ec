"""The saturation fit: Eq. 1 on the upper hull, intervals, held-out prediction error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layerprobe.analysis.fit import (
    fit_curve,
    fit_group,
    fit_saturation,
    holdout_split,
    prediction_error,
    write_fits,
)
from layerprobe.errors import ConfigError, DataError, UnknownNameError
from layerprobe.results import read_selected
from tests.results_data import curve_ds, curve_store, probe_rows, write_store

TRUE = {"near": (0.9, 1.5, 0.05), "far": (0.6, 2.5, 0.30)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return curve_store(tmp_path_factory.mktemp("fit") / "res", TRUE, shots=(1, 25))


def test_recovers_known_curves_from_hull_with_points_below(store):
    fits = fit_saturation(read_selected(store), bootstrap=0)
    assert len(fits) == 4 and fits["converged"].all()
    for row in fits.itertuples():
        k, alpha, e_ir = TRUE[row.task]
        assert row.k == pytest.approx(k, rel=1e-3)
        assert row.alpha == pytest.approx(alpha, rel=1e-3)
        assert row.e_ir == pytest.approx(e_ir, abs=1e-4)
        assert row.saturation == pytest.approx(1 - e_ir, abs=1e-4)
        assert row.n_fit == 7 and row.n_checkpoints == 13  # the 6 points below are not on the hull
        assert row.fit_error < 1e-6


def test_fitting_all_points_misses_the_curve(store):
    fits = fit_saturation(read_selected(store), points="all", bootstrap=0)
    near = fits[(fits["task"] == "near") & (fits["shots"] == 1)].iloc[0]
    assert near.fit_error > 0.02  # the points below are 0.05 under the curve
    assert near.saturation < 1 - TRUE["near"][2]  # fits the average checkpoint: lower


def test_all_rows_and_selected_rows_give_the_same_fit(store):
    from layerprobe.results import load

    a = fit_saturation(read_selected(store), bootstrap=0)
    b = fit_saturation(load(store), bootstrap=0)  # every λ row; the unselected ones have 0 accuracy
    assert np.allclose(a[["k", "alpha", "e_ir"]], b[["k", "alpha", "e_ir"]])


def test_power_law_has_no_saturation_and_fits_worse():
    us = np.linspace(0.3, 0.95, 15)
    ds = curve_ds(us, 0.7, 1.8, 0.2)
    eq1, power = fit_curve(us, ds, "eq1"), fit_curve(us, ds, "power")
    assert eq1.converged and power.converged
    assert len(power.theta) == 2
    assert power.rmse > 100 * max(eq1.rmse, 1e-9)
    row = fit_group(us, ds, form="power", bootstrap=0)
    assert row["e_ir"] == 0 and row["saturation"] == 1


def test_bootstrap_is_an_option_in_its_own_labelled_columns_and_deterministic():
    rng = np.random.default_rng(3)
    us = rng.uniform(0.3, 0.95, 60)
    ds = curve_ds(us, 0.8, 2.0, 0.15) - np.abs(rng.normal(0, 0.01, 60))
    plain = fit_group(us, ds)
    assert "e_ir_boot_lo" not in plain and plain["interval"] == "profile"
    a = fit_group(us, ds, bootstrap=60, seed=1)
    b = fit_group(us, ds, bootstrap=60, seed=1)
    assert a == b
    assert a["n_bootstrap"] > 50
    assert a["e_ir_boot_lo"] <= a["e_ir_boot_hi"]
    # the profile interval is the same with or without the bootstrap beside it
    assert (a["e_ir_lo"], a["e_ir_hi"]) == (plain["e_ir_lo"], plain["e_ir_hi"])
    assert a["saturation_lo"] == pytest.approx(1 - a["e_ir_hi"])


def test_prediction_error_is_measured_on_the_held_out_hull_points():
    # 20 checkpoints; the top 20 % by US (4) are held out, then one more, so that 3 held-out
    # points are on the frontier. The 15 others lie on the curve, so the fit on them is exact.
    # Held out: three points 0.02 above the curve (on the hull of all points) and two far below
    # it (inside the hull: not what the curve predicts).
    us = np.linspace(0.3, 0.9, 20)
    ds = curve_ds(us, 0.8, 1.7, 0.2)
    ds[[15, 17, 19]] += 0.02
    ds[[16, 18]] -= 0.3
    order = np.random.default_rng(0).permutation(20)  # the order of the input does not matter
    train, held, targets = holdout_split(us[order], ds[order], 0.2)
    assert sorted(order[held]) == [15, 16, 17, 18, 19]
    assert sorted(order[targets]) == [15, 17, 19] and len(train) == 15
    err, n = prediction_error(us[order], ds[order], 0.2, points="hull", form=fit_form())
    assert n == 3
    assert err == pytest.approx(0.02, abs=1e-4)
    err_all, n_all = prediction_error(us, ds, 0.2, points="all", form=fit_form())
    assert n_all == 3 and err_all == pytest.approx(0.02, abs=1e-4)  # the same targets
    row = fit_group(us, ds, holdout_top=0.2)
    assert row["n_heldout"] == 5 and row["n_targets"] == 3
    assert row["pred_error"] == row["pred_error_hull"] == pytest.approx(err)
    assert row["n_train_all"] == 15


def fit_form():
    from layerprobe.analysis.fit import FORMS

    return FORMS["eq1"]


def test_holdout_selects_the_highest_us_checkpoints(store):
    fits = fit_saturation(read_selected(store), holdout_top=0.3, bootstrap=0)
    # ceil(0.3 · 13) = 4 held out: m09..m12, of which m10 and m12 are on the curve (hull); one
    # more (m08, on the curve) makes 3 targets.
    assert set(fits["n_heldout"]) == {5} and set(fits["n_targets"]) == {3}
    assert np.allclose(fits["pred_error_hull"], 0, atol=1e-6)
    assert (fits["pred_error_all"] > 0.01).all()  # the all-points fit is pulled down
    count = fit_saturation(read_selected(store), holdout_top=3, bootstrap=0)
    # m10..m12 hold 2 frontier points (m10, m12); m09 (below) and m08 (on the curve) join
    assert set(count["n_heldout"]) == {5} and set(count["n_targets"]) == {3}


def test_best_layer_and_named_layer(store):
    table = read_selected(store)
    best = fit_saturation(table, layer="best", bootstrap=0)
    assert set(best["layer"]) == {"best"}
    # pre_logits is every checkpoint's best layer here, so the fit is the same
    assert np.allclose(best["e_ir"], fit_saturation(table, bootstrap=0)["e_ir"])
    early = fit_saturation(table, layer="blocks.0", bootstrap=0)
    assert (early["saturation"] < best["saturation"]).all()  # 0.8 × the accuracy
    with pytest.raises(UnknownNameError, match="blocks.2"):
        fit_saturation(table, layer="blocks.22")


def test_too_few_hull_points_is_skipped_with_a_warning(tmp_path):
    rows = []
    for i, (u, d) in enumerate([(0.3, 0.2), (0.5, 0.25), (0.7, 0.3)]):  # collinear: 2 hull points
        rows += probe_rows(d, model_key=f"m{i}", upstream_accuracy=u, task="flat")
    for i, u in enumerate(np.linspace(0.3, 0.9, 5)):
        rows += probe_rows(
            float(curve_ds(u, 0.8, 2, 0.1)), model_key=f"c{i}", upstream_accuracy=u, task="ok"
        )
    warnings = []
    fits = fit_saturation(
        read_selected(write_store(rows, tmp_path)), bootstrap=0, warn=warnings.append
    )
    assert list(fits["task"]) == ["ok"]
    assert any("task flat" in w and "only 2 hull point" in w for w in warnings)


def test_a_fit_that_does_not_converge_is_reported(store):
    warnings = []
    fits = fit_saturation(read_selected(store), bootstrap=0, max_evals=1, warn=warnings.append)
    assert (fits["status"] == "not converged").all() and not fits["converged"].any()
    assert fits["k"].isna().all() and fits["saturation"].isna().all()
    assert any("did not converge" in w for w in warnings)


def test_results_without_upstream_accuracy(tmp_path):
    rows = probe_rows(0.5, upstream_accuracy=None) + probe_rows(
        0.6, upstream_accuracy=None, model_key="m1"
    )
    with pytest.raises(DataError, match="layerprobe upstream"):
        fit_saturation(read_selected(write_store(rows, tmp_path)))


def test_bad_options():
    frame = pd.DataFrame()
    with pytest.raises(ConfigError, match="holdout"):
        fit_saturation(frame, holdout_top=1.5)
    with pytest.raises(ConfigError, match="at least 3"):
        fit_saturation(frame, holdout_top=2)
    with pytest.raises(ConfigError, match="max-width"):
        fit_saturation(frame, max_width=0)
    with pytest.raises(ConfigError, match="points"):
        fit_saturation(frame, points="convex")
    with pytest.raises(ConfigError, match="form"):
        fit_group(np.arange(5.0) / 10, np.arange(5.0) / 10, form="logit")


def test_write_fits_is_atomic(store, tmp_path):
    fits = fit_saturation(read_selected(store), bootstrap=0)
    path = write_fits(fits, tmp_path / "a" / "fits.parquet")
    assert [p.name for p in path.parent.iterdir()] == ["fits.parquet"]
    back = pd.read_parquet(path)
    assert back["e_ir"].tolist() == fits["e_ir"].tolist()
