"""Rank correlations with intervals and controls, checked on known truths."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from layerprobe.analysis.layersat import saturation_correlation
from layerprobe.analysis.rankcorr import bootstrap_rho, partial_spearman, spearman


def _pair(rng, n, r):
    x = rng.standard_normal(n)
    return x, r * x + math.sqrt(1 - r * r) * rng.standard_normal(n)


def test_bootstrap_interval_over_pairs_holds_its_coverage_on_a_known_correlation():
    n, r = 20, -0.6
    truth = 6 / math.pi * math.asin(r / 2)  # Spearman's rho of a bivariate normal
    rng = np.random.default_rng(7)
    hits, widths = 0, []
    for i in range(200):
        lo, hi = bootstrap_rho(*_pair(rng, n, r), draws=500, seed=i)
        hits += lo <= truth <= hi
        widths.append(hi - lo)
    assert 0.90 <= hits / 200 <= 1.0
    assert 0.3 < np.median(widths) < 1.0  # 20 tasks cannot pin rho down: the interval says so


def test_partial_correlation_removes_a_shared_cause_and_keeps_a_direct_link():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(400)
    x, y = z + 0.5 * rng.standard_normal(400), z + 0.5 * rng.standard_normal(400)
    assert spearman(x, y)[0] > 0.6  # x and y look related ...
    rho, p = partial_spearman(x, y, z)
    assert abs(rho) < 0.12 and p > 0.01  # ... only through z
    y_direct = x + 0.3 * rng.standard_normal(400)
    assert partial_spearman(x, y_direct, z)[0] > 0.5


def test_too_few_pairs_give_nan_not_a_number_that_looks_sure():
    assert all(math.isnan(v) for v in bootstrap_rho(np.arange(3.0), np.arange(3.0)))
    assert all(math.isnan(v) for v in partial_spearman(*(np.arange(3.0),) * 3))


def _store_of(tasks: int, checkpoints: int, rng):
    """A layer-saturation table and fits where early-saturating tasks have high e_IR."""
    rows, fits = [], []
    for t in range(tasks):
        depth = t / (tasks - 1)
        for c in range(checkpoints):
            rows.append(
                dict(
                    model_key=f"m{c}",
                    upstream_task="up",
                    task=f"t{t}",
                    shots=5,
                    probe="ridge",
                    us=0.2 + 0.05 * c,
                    best_layer="b",
                    best_depth=depth,
                    saturation_depth=depth + 0.1 * rng.standard_normal(),
                    gap=0.1 * (1 - depth),
                    best_accuracy=0.9,
                    last_accuracy=0.5 + 0.4 * depth,
                    best_se=0.0,
                )
            )
        status = "ok" if t % 5 else "few_points"  # every fifth task: undetermined
        fits.append(
            dict(
                upstream_task="up",
                task=f"t{t}",
                shots=5,
                probe="ridge",
                e_ir=0.6 - 0.5 * depth + 0.02 * rng.standard_normal(),
                converged=True,
                status=status,
            )
        )
    return pd.DataFrame(rows), pd.DataFrame(fits)


def test_correlation_uses_only_determined_fits_and_reports_intervals_and_the_partial():
    saturation, fits = _store_of(tasks=15, checkpoints=6, rng=np.random.default_rng(1))
    corr = saturation_correlation(saturation, fits, draws=300).set_index("measure")
    row = corr.loc["saturation_depth"]
    assert row.tasks == 12  # 3 of 15 fits are not ok: left out, and named
    assert row.undetermined == "t0, t10, t5"
    assert row.rho < -0.9 and row.rho_lo <= row.rho <= row.rho_hi < 0
    assert row.rho_ckpt_lo < row.rho_ckpt_hi < 0  # checkpoints vary: so does the task mean
    # last-layer accuracy rises with depth exactly here: given it, depth adds nothing
    assert math.isnan(row.partial_rho) or abs(row.partial_rho) < 0.6
