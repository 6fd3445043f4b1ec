"""Knob effects from matched pairs: known paired effects recovered, confounded stores refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from layerprobe.analysis.pairs import knob_pairs, t_interval
from layerprobe.cli import main
from layerprobe.results import load
from layerprobe.results.read import read_selected
from layerprobe.results.schema import PRETRAIN_IDENTITY, SCHEMA_VERSION
from tests.helpers_pretrain import lp_home_fixture  # noqa: F401 - fixture
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


# -- matched on the pre-training identity (results schema 3) ----------------------------------
SCHEDULE = "lr=0.01 wd=0.05 warmup_epochs=0.1 label_smoothing=0 batch_size=128 schedule_epochs=4"


def identity_rows(checkpoints: dict[str, dict]) -> list[dict]:
    """One (model key → head_wd, pretrain_seed, ...) checkpoint per entry, all of one model and
    schedule unless the entry says otherwise; DS accuracy 0.4 + head_wd / 10 on one task."""
    rows = []
    for key, ckpt in checkpoints.items():
        ident = dict(pretrain_model="resnet-tiny32", pretrain_schedule=SCHEDULE, pretrain_seed=0)
        ident.update(ckpt)
        for layer, depth in zip(LAYERS, DEPTHS, strict=True):
            acc = (0.4 + ident["head_wd"] / 10) * (0.7 + 0.3 * depth)
            rows += probe_rows(acc, model_key=key, layer=layer, depth=depth, **ident)
    return rows


def test_a_pair_differing_also_in_seed_is_not_matched(tmp_path):
    """a (wd 0, seed 0), b (wd 0.1, seed 1), c (wd 0.1, seed 0): only a–c is a pair."""
    store = write_store(
        identity_rows(
            dict(a=dict(head_wd=0.0), b=dict(head_wd=0.1, pretrain_seed=1), c=dict(head_wd=0.1))
        ),
        tmp_path / "res",
    )
    table = read_selected(store)
    assert set(table["pretrain_seed"]) == {0, 1} and set(table["pretrain_model"]) == {
        "resnet-tiny32"
    }
    result = knob_pairs(table)
    assert list(result.pairs["low_checkpoints"]) == ["a"]
    assert list(result.pairs["high_checkpoints"]) == ["c"]  # b differs in its seed too
    assert result.pairs["pretrain_seed"].tolist() == [0]
    assert result.matched_on["head_wd"][-3:] == [
        "pretrain_model",
        "pretrain_seed",
        "pretrain_schedule",
    ]
    assert result.effects["d_ds"].iloc[0] == pytest.approx(0.01)
    first = result.notes[0]
    assert "pre-training architecture, seed and schedule" in first
    assert "may also differ" not in first  # every checkpoint records them: nothing to confess
    assert "1 matched pair(s) of 2 checkpoints" in result.notes[1]


def test_differing_in_head_wd_and_seed_only_is_no_pair(tmp_path):
    store = write_store(
        identity_rows(dict(a=dict(head_wd=0.0), b=dict(head_wd=0.1, pretrain_seed=1))),
        tmp_path / "res",
    )
    result = knob_pairs(read_selected(store))
    assert result.effects.empty and result.pairs.empty
    assert "cannot be separated from pretrain_seed" in result.notes[1]


@pytest.mark.parametrize("column", ["pretrain_schedule", "pretrain_model"])
def test_a_pair_differing_in_schedule_or_architecture_is_not_matched(tmp_path, column):
    other = "lr=0.02" if column == "pretrain_schedule" else "vit-tiny32"
    store = write_store(
        identity_rows(dict(a=dict(head_wd=0.0), b=dict(head_wd=0.1, **{column: other}))),
        tmp_path / "res",
    )
    result = knob_pairs(read_selected(store))
    assert result.pairs.empty and f"cannot be separated from {column}" in result.notes[1]


def old_schema(path) -> None:
    """Rewrite a part as results schema 2 wrote it: no pre-training identity columns."""
    table = pq.read_table(path)
    meta = dict(table.schema.metadata) | {b"layerprobe_schema_version": b"2"}
    table = table.drop_columns([c for c in PRETRAIN_IDENTITY if c in table.column_names])
    version = table.schema.get_field_index("schema_version")
    table = table.set_column(version, "schema_version", pa.array([2] * len(table), pa.int64()))
    pq.write_table(table.replace_schema_metadata(meta), path)


def test_old_schema_parts_are_read_and_pairs_fall_back(tmp_path, capsys):
    """A part of schema 2 (before the identity columns) is read with them unknown; where one
    compared checkpoint lacks the seed, pairs are not matched on it and the first note says so."""
    store = write_store(
        identity_rows(
            dict(a=dict(head_wd=0.0), b=dict(head_wd=0.1, pretrain_seed=1), c=dict(head_wd=0.1))
        ),
        tmp_path / "res",
    )
    old = next(
        p for p in store.rglob("*.parquet") if pq.read_table(p)["model_key"][0].as_py() == "b"
    )
    old_schema(old)
    assert pq.read_metadata(old).metadata[b"layerprobe_schema_version"] == b"2"
    rows = load(store)
    b = rows[rows["model_key"] == "b"]
    assert len(b) and b["pretrain_seed"].isna().all() and b["pretrain_model"].isna().all()
    assert set(rows["schema_version"]) == {2, SCHEMA_VERSION}
    result = knob_pairs(read_selected(store))
    first = result.notes[0]
    assert "do not record the architecture (pretrain_model)" in first
    assert "for 1 of the 3 checkpoint(s) compared" in first and "may also differ" in first
    assert "pretrain_seed" not in result.matched_on["head_wd"]
    assert sorted(result.pairs["high_checkpoints"]) == ["b;c"]  # b and c share the high side
    assert main(["results", "knobs", "--results", str(store)]) == 0
    assert "for 1 of the 3 checkpoint(s) compared" in capsys.readouterr().out
    for part in store.rglob("*.parquet"):
        old_schema(part)  # a store of schema 2 only: still read, every identity unknown
    assert knob_pairs(read_selected(store)).pairs["high_checkpoints"].tolist() == ["b;c"]


# -- the real flow: pretrain → extract → probe → matched pairs ---------------------------------
TINY_RUN = dict(
    data_fraction=0.05, epochs=1, batch_size=32, lr=5e-3, warmup_epochs=0.1, device="cpu"
)


@pytest.mark.slow
def test_pretrained_checkpoints_carry_their_identity_into_the_parts(lp_home, tmp_path):
    """Two tiny `layerprobe pretrain` runs that differ in head_wd alone: their parts hold the
    model, seed and schedule, and the pair is matched on all of them."""
    from layerprobe.backbones import ModelConfig
    from layerprobe.extract import ExtractConfig, extract
    from layerprobe.pretrain import PretrainConfig, pretrain
    from layerprobe.probe import ProbeConfig, probe_cache

    config = ExtractConfig(cache_dir=tmp_path / "cache", splits="train,test", quiet=True)
    for wd in (0.0, 1.0):
        run = PretrainConfig("resnet-tiny32", head_wd=wd, **TINY_RUN)
        ckpt = pretrain(run, tmp_path / f"wd{wd:g}", quiet=True)
        extract(ModelConfig(str(ckpt)), "builtin/objects-colour", config)
    probe_cache(tmp_path / "cache", tmp_path / "results", ProbeConfig(shots=[5], seeds=1))
    parts = sorted((tmp_path / "results").rglob("*.parquet"))
    assert len(parts) == 2
    for part in parts:
        table = pq.read_table(part, columns=[*PRETRAIN_IDENTITY, "schema_version"]).to_pandas()
        assert (table["schema_version"] == SCHEMA_VERSION).all()
        assert set(table["pretrain_model"]) == {"resnet-tiny32"}
        assert set(table["pretrain_seed"]) == {0}
        assert table["pretrain_schedule"].nunique() == 1
        schedule = table["pretrain_schedule"].iloc[0]
        assert "lr=0.005 " in schedule and "batch_size=32 " in schedule
        assert "schedule_epochs=1 " in schedule and "precision=fp32" in schedule
    result = knob_pairs(read_selected(tmp_path / "results"))
    assert len(result.pairs) == 1
    assert {"pretrain_model", "pretrain_seed", "pretrain_schedule"} <= set(
        result.matched_on["head_wd"]
    )
    assert "may also differ" not in result.notes[0]


def test_an_external_table_with_a_seed_column_is_matched_on_it(tmp_path):
    """A published table's pretrain_seed column is a schema column: pairs must share it."""
    base = dict(params=1e6, upstream_accuracy=0.5, task="t")
    rows = [
        dict(base, model=m, head_wd=wd, pretrain_seed=s, test_accuracy=0.4 + wd)
        for m, wd, s in (("a", 0.0, 0), ("b", 0.1, 1), ("c", 0.1, 0))
    ]
    path = tmp_path / "zoo.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = knob_pairs(read_selected(path))
    assert result.pairs[["low_checkpoints", "high_checkpoints"]].values.tolist() == [["a", "c"]]
    assert "pretrain_seed" in result.matched_on["head_wd"]
    assert "the architecture (pretrain_model), the pre-training seed" not in result.notes[0]
    assert "the architecture (pretrain_model) or the schedule" in result.notes[0]
