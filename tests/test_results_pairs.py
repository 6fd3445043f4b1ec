"""Knob effects from matched pairs: known paired effects recovered, confounded stores refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from layerprobe.analysis.pairs import knob_pairs, t_interval
from layerprobe.cli import main
from layerprobe.results.read import read_selected
from tests.results_data import DEPTHS, LAYERS, probe_rows, write_store

D_US, D_DS, D_DEPTH = -0.02, 0.05, -1 / 3  # head_wd 0 → 0.1: the true paired effects


def pair_rows(matched: bool = True, seed: int = 0) -> list[dict]:
    """Six (params, epochs) cells. Matched: each cell has a head_wd 0 and a head_wd 0.1
    checkpoint; head_wd 0.1 costs 0.02 US accuracy, adds 0.05 DS accuracy at pre_logits (plus
    checkpoint noise) and, on task 'early', moves the best layer from pre_logits (depth 1) to
    blocks.2 (depth 2/3). Not matched: head_wd 0.1 only where params = 10^7, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    rows = []
    cells = [(p, e) for p in (10**5, 10**6, 10**7) for e in (5.0, 10.0)]
    for c, (params, epochs) in enumerate(cells):
        us0 = 0.4 + 0.05 * c
        wds = (0.0, 0.1) if matched else ((0.1,) if params == 10**7 else (0.0,))
        for wd in wds:
            key = f"c{c}-wd{wd:g}"
            us = us0 + (D_US if wd else 0.0)
            for task in ("early", "late"):
                ds = 0.3 + 0.04 * c + (D_DS if wd else 0.0) + rng.normal(0, 0.01)
                scales = (0.8, 0.9, 0.95, 1.0)
                for layer, depth, scale in zip(LAYERS, DEPTHS, scales, strict=True):
                    acc = ds * scale
                    if wd and task == "early" and layer == "blocks.2":
                        acc = ds + 0.02  # the best layer moved down
                    rows += probe_rows(
                        acc,
                        spread=0.005,
                        model_key=key,
                        upstream_accuracy=us,
                        params=params,
                        epochs=epochs,
                        head_wd=wd,
                        task=task,
                        layer=layer,
                        depth=depth,
                    )
    return rows


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    return write_store(pair_rows(True), tmp_path_factory.mktemp("pairs") / "res")


def test_known_paired_effects_are_recovered_with_covering_intervals(matched):
    result = knob_pairs(read_selected(matched))
    eff = result.effects.set_index("task")
    assert set(eff["knob"]) == {"head_wd"} and (eff["pairs"] == 6).all()
    assert (eff["low"] == 0.0).all() and (eff["high"] == 0.1).all()
    for task in ("early", "late"):
        row = eff.loc[task]
        assert row["d_us"] == pytest.approx(D_US)
        assert row["d_us_lo"] <= D_US + 1e-12 and row["d_us_hi"] >= D_US - 1e-12
        assert row["d_ds_lo"] < D_DS < row["d_ds_hi"]
        assert row["d_ds_lo"] > 0  # the effect is resolved, not just covered
        assert row["d_ds_hi"] - row["d_ds_lo"] < 0.05
    early, late = eff.loc["early"], eff.loc["late"]
    assert early["d_best_depth"] == pytest.approx(D_DEPTH)
    assert late["d_best_depth"] == pytest.approx(0.0)
    assert early["d_ds_best"] > early["d_ds"]  # the best layer gained more than pre_logits
    assert len(result.pairs) == 6 and set(result.pairs["params"]) == {1e5, 1e6, 1e7}
    text = " ".join(result.notes)
    assert "head_wd: 6 matched pair(s) of 12 checkpoints" in text
    assert "pre-training seed" in text  # what the store cannot match on is said
    assert "head_lr takes one value" in text
    assert "moves (interval excludes 0) on 1 of 2 task(s): early (-0.33)" in text


def test_no_matched_pairs_is_said_and_no_means_are_shown(tmp_path):
    store = write_store(pair_rows(False), tmp_path / "res")
    result = knob_pairs(read_selected(store))
    assert result.effects.empty and result.pairs.empty
    text = " ".join(result.notes)
    assert "no two checkpoints differ only in head_wd" in text
    assert "cannot be separated from params" in text


def test_t_interval_matches_the_textbook():
    d = np.array([0.1, 0.3, 0.2, 0.4])
    mean, lo, hi = t_interval(d, 0.95)
    half = 3.182446305284263 * d.std(ddof=1) / 2  # t(0.975; 3)
    assert (mean, lo, hi) == pytest.approx((0.25, 0.25 - half, 0.25 + half))
    assert np.isnan(t_interval(np.array([0.2]))[1])


def test_interval_coverage_on_known_effect():
    """Over 200 simulated stores' worth of pairs, the 95 % interval covers the true effect
    about 95 % of the time (binomial: 0.95 ± 3 sd ≈ [0.90, 0.99])."""
    rng = np.random.default_rng(1)
    hits = [
        (lambda m, lo, hi: lo <= 0.05 <= hi)(*t_interval(0.05 + rng.normal(0, 0.02, 6)))
        for _ in range(200)
    ]
    assert 0.90 <= np.mean(hits) <= 0.99


def test_cli_results_knobs(matched, capsys):
    assert main(["results", "knobs", "--results", str(matched), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["matched_on"]["head_wd"] == [
        "upstream_task",
        "params",
        "data_fraction",
        "epochs",
        "head_lr",
    ]
    early = next(e for e in out["effects"] if e["task"] == "early")
    assert early["d_best_depth"] == pytest.approx(D_DEPTH)
    assert main(["results", "knobs", "--results", str(matched), "--knob", "head_wd"]) == 0
    table = capsys.readouterr().out
    assert "Δ depth of the best layer" in table and "-0.333" in table


def test_cli_match_on_an_external_column(tmp_path, capsys):
    """An external table's architecture column splits pairs that params alone would match."""
    rows = []
    for arch, shift in (("vit", 0.0), ("mixer", 0.1)):
        for wd, d in ((0.0, 0.0), (0.1, 0.04)):
            rows.append(
                dict(
                    model=f"{arch}-{wd}",
                    arch=arch,
                    params=1e6,
                    head_wd=wd,
                    upstream_accuracy=0.5,
                    task="t",
                    test_accuracy=0.4 + shift + d,
                )
            )
    path = tmp_path / "zoo.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    args = ["results", "knobs", "--results", str(path), "--format", "json"]
    assert main([*args, "--match", "arch"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["pairs"]) == 2 and out["effects"][0]["d_ds"] == pytest.approx(0.04)
    assert out["matched_on"]["head_wd"] == ["upstream_task", "params", "arch"]
    assert "(data_fraction, epochs, head_lr not recorded, so not matched)" in out["notes"][1]
    assert main(args) == 0  # without --match arch: the two architectures share each side
    out = json.loads(capsys.readouterr().out)
    assert len(out["pairs"]) == 1 and "several checkpoints share one side" in out["notes"][1]
    assert out["effects"][0]["d_ds"] == pytest.approx(0.04)
    assert main([*args, "--match", "archh"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--match 'archh': no such column" in err[0]


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--shots", "7"], "no results with 7 shots; the store has shots 5"),
        (["--level", "1.5"], "--level 1.5 is not in (0, 1)"),
        (["--match", "seed"], "seed vary within a checkpoint"),
    ],
)
def test_cli_bad_options_are_one_line_exit_2(matched, extra, expect, capsys):
    assert main(["results", "knobs", "--results", str(matched), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
