"""Identifiability of the saturation fit: a known truth for every status, the coverage of the
profile intervals on a small simulation, and fits per group (``group_by``)."""

from __future__ import annotations

import numpy as np
import pytest

from layerprobe.analysis.fit import STATUSES, fit_group, fit_saturation
from layerprobe.errors import ConfigError
from layerprobe.results import read_selected
from tests.results_data import curve_ds, probe_rows, write_store


def status(us, ds, se, **options):
    row = fit_group(
        np.asarray(us, float),
        np.asarray(ds, float),
        ds_se=np.full(len(us), se),
        holdout_top=0,
        **options,
    )
    return row


US = np.linspace(0.2, 0.9, 10)


def test_ok_when_a_concave_curve_with_enough_points_determines_e_ir():
    row = status(US, curve_ds(US, 0.8, 2.0, 0.2), 0.005)
    assert row["status"] == "ok" and row["reasons"] == ""
    assert row["e_ir_lo"] < 0.2 < row["e_ir_hi"] and row["e_ir_hi"] - row["e_ir_lo"] < 0.05
    assert row["k_lo"] < 0.8 < row["k_hi"] and row["alpha_lo"] < 2.0 < row["alpha_hi"]
    assert row["saturation_lo"] == pytest.approx(1 - row["e_ir_hi"])
    assert row["n_points"] == 10


def test_few_points():
    # 4 points for 3 parameters: no spare degree of freedom beyond one
    row = status(US[::3], curve_ds(US[::3], 0.8, 2.0, 0.2), 0.005)
    assert row["status"] == "few_points" and row["n_points"] == 4


def test_convex_frontier():
    # a convex frontier (α = 0.6): the hull keeps its ends and one point above the chord,
    # although all 9 points rise
    us = np.linspace(0.2, 0.9, 9)
    ds = curve_ds(us, 0.5, 0.6, 0.2)
    ds[4] += 0.1
    row = status(us, ds, 0.005)
    assert row["status"] == "convex_frontier" and row["n_points"] == 3
    assert "few_points" in row["reasons"].split(",")


def test_k_zero_when_ds_falls_with_us():
    row = status(US, 0.5 - 0.1 * US, 0.005, points="all")
    assert row["status"] == "k_zero" and row["k"] <= 1e-6


def test_no_rise_within_noise():
    # a concave rise of 0.01 over the range, probe noise 0.01: a flat line fits as well
    us = np.linspace(0.3, 0.9, 8)
    row = status(us, 0.4 + 0.01 * np.sqrt(us - 0.3), 0.01)
    assert row["status"] == "no_rise"
    assert row["e_ir_lo"] == 0.0  # the interval says what the data allow


def test_alpha_at_bound():
    # the DS accuracy jumps at the lowest US accuracies, then stays flat: α runs to its bound
    us = np.array([0.02, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9])
    ds = np.array([0.1, 0.55, 0.7, 0.701, 0.7015, 0.7018, 0.702])
    row = status(us, ds, 0.002)
    assert row["status"] == "alpha_at_bound" and row["alpha"] == pytest.approx(20, rel=0.01)


def test_below_data():
    # a plateau of 15 checkpoints at 0.60 and one at 0.66: all points fitted, the ceiling's
    # interval ends below the best observed DS accuracy
    rng = np.random.default_rng(0)
    us = np.r_[np.linspace(0.1, 0.3, 5), np.linspace(0.35, 0.85, 15), 0.9]
    ds = np.r_[np.linspace(0.3, 0.55, 5), 0.6 + rng.normal(0, 0.002, 15), 0.66]
    row = status(us, ds, 0.002, points="all")
    assert row["status"] == "below_data"
    assert row["saturation_hi"] < row["best_ds"] == 0.66


def test_wide_interval_on_a_short_stretch():
    # a stretch of 0.25 in US accuracy, far from the top: α is bounded, e_IR is not
    us = np.linspace(0.3, 0.55, 10)
    row = status(us, curve_ds(us, 0.8, 1.5, 0.2), 0.005)
    assert row["status"] == "wide_interval" and row["reasons"] == "wide_interval"
    assert row["e_ir_hi"] - row["e_ir_lo"] > 0.2 and row["e_ir_lo"] <= 0.2 <= row["e_ir_hi"]
    assert status(us, curve_ds(us, 0.8, 1.5, 0.2), 0.005, max_width=0.5)["status"] == "ok"
    # shorter still: α is not bounded either
    us = np.linspace(0.3, 0.45, 8)
    row = status(us, curve_ds(us, 0.8, 1.5, 0.2), 0.005)
    assert row["reasons"] == "alpha_at_bound,wide_interval"


def test_every_status_is_documented():
    tested = {"ok", "few_points", "convex_frontier", "k_zero", "no_rise", "alpha_at_bound"}
    tested |= {"below_data", "wide_interval", "not converged"}
    assert set(STATUSES) | {"ok"} == tested


def test_without_seed_noise_and_no_spare_point_the_interval_is_everything():
    us = np.array([0.3, 0.6, 0.9])
    row = fit_group(us, curve_ds(us, 0.8, 2.0, 0.2), holdout_top=0)
    assert (row["e_ir_lo"], row["e_ir_hi"]) == (0.0, 1.0)
    assert row["status"] == "few_points"


def test_profile_intervals_cover_the_truth_on_a_small_simulation():
    # 40 replicates of a known curve: 20 checkpoints, two thirds below the frontier, 3 seeds of
    # probe noise 0.01. The nominal 95 % interval covers the true e_IR in at least 85 % of the
    # fits reported ok, and most fits are ok. On a flat curve no replicate is ok.
    rng = np.random.default_rng(7)

    def replicate(k, alpha, e_ir, lo, hi, n=20):
        us = np.sort(rng.uniform(lo, hi, n))
        ds = curve_ds(us, k, alpha, e_ir) - (rng.random(n) < 2 / 3) * np.abs(rng.normal(0, 0.05, n))
        runs = ds[:, None] + rng.normal(0, 0.01, (n, 3))
        return us, runs.mean(1), runs.std(1, ddof=1) / np.sqrt(3)

    rows = []
    for _ in range(40):
        us, ds, se = replicate(0.8, 2.0, 0.2, 0.2, 0.9)
        rows.append(fit_group(us, ds, ds_se=se, holdout_top=0))
    ok = [r for r in rows if r is not None and r["status"] == "ok"]
    assert len(ok) >= 24
    covered = np.mean([r["e_ir_lo"] <= 0.2 <= r["e_ir_hi"] for r in ok])
    assert covered >= 0.85
    flat = []
    for _ in range(20):
        us, ds, se = replicate(0.001, 1.0, 0.65, 0.02, 0.57)
        flat.append(fit_group(us, ds, ds_se=se, holdout_top=0))
    assert not any(r is not None and r["status"] == "ok" for r in flat)


def test_k_and_alpha_intervals_cover_with_the_lowest_checkpoint_below_the_frontier():
    # The hull always keeps its lowest-US checkpoint, whatever its DS accuracy: here it lies
    # 0.02-0.06 below the known curve in every replicate (two thirds of the others below it by
    # |N(0, 0.05)|, probe noise 3 seeds of 0.01). Fitting it as if it were on the frontier bent
    # k and α: k covered 66 % and α 87 % of the ok fits before the profile was united with the
    # one without that point.
    rng = np.random.default_rng(1)
    k, alpha, e_ir, n = 0.8, 3.0, 0.15, 20
    rows = []
    for _ in range(40):
        us = np.sort(rng.uniform(0.1, 0.9, n))
        ds = curve_ds(us, k, alpha, e_ir) - (rng.random(n) < 2 / 3) * np.abs(rng.normal(0, 0.05, n))
        ds[0] = curve_ds(us[0], k, alpha, e_ir) - rng.uniform(0.02, 0.06)
        runs = ds[:, None] + rng.normal(0, 0.01, (n, 3))
        se = runs.std(1, ddof=1) / np.sqrt(3)
        rows.append(fit_group(us, runs.mean(1), ds_se=se, holdout_top=0))
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 30
    assert np.mean([r["k_lo"] <= k <= r["k_hi"] for r in ok]) >= 0.8
    assert np.mean([r["alpha_lo"] <= alpha <= r["alpha_hi"] for r in ok]) >= 0.9
    assert np.mean([r["e_ir_lo"] <= e_ir <= r["e_ir_hi"] for r in ok]) >= 0.9
    assert all(r["saturation_lo"] == pytest.approx(1 - r["e_ir_hi"]) for r in ok)


def family_store(folder):
    """Two families on different curves; together their points make one misleading hull."""
    rows = []
    for family, (k, alpha, e_ir), lo in (
        ("vit", (0.9, 2.0, 0.1), 0.3),
        ("cnn", (0.5, 2.5, 0.4), 0.2),
    ):
        for i, u in enumerate(np.linspace(lo, lo + 0.6, 9)):
            rows += probe_rows(
                float(curve_ds(u, k, alpha, e_ir)),
                spread=0.005,
                model=f"{family}",
                model_key=f"{family}{i}",
                upstream_accuracy=float(u),
                task="t",
            )
    return write_store(rows, folder)


def test_group_by_fits_each_family_on_its_own_hull(tmp_path):
    table = read_selected(family_store(tmp_path / "r"))
    mixed = fit_saturation(table)
    assert len(mixed) == 1 and mixed["group"].tolist() == [""]
    fits = fit_saturation(table, group_by="model").set_index("group")
    assert sorted(fits.index) == ["cnn", "vit"]
    for family, e_ir in (("vit", 0.1), ("cnn", 0.4)):
        row = fits.loc[family]
        assert row["status"] == "ok" and row["n_checkpoints"] == 9
        assert row["e_ir_lo"] <= e_ir <= row["e_ir_hi"]
        assert row["e_ir"] == pytest.approx(e_ir, abs=0.01)
    assert not mixed["e_ir_lo"].iloc[0] <= 0.4 <= mixed["e_ir_hi"].iloc[0]


def test_group_by_a_bad_column(tmp_path):
    table = read_selected(family_store(tmp_path / "r"))
    with pytest.raises(ConfigError, match="no such column"):
        fit_saturation(table, group_by="family")
    with pytest.raises(ConfigError, match="varies within a checkpoint"):
        fit_saturation(table, group_by="seed")
