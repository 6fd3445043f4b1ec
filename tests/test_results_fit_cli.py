"""`layerprobe fit` from the shell: exit codes, one-line errors, outputs."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.results_data import curve_store, probe_rows, write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return curve_store(
        tmp_path_factory.mktemp("cli") / "res", {"near": (0.9, 1.5, 0.05), "far": (0.6, 2.5, 0.3)}
    )


def fit(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "layerprobe", "fit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_table_and_fits_parquet(store, tmp_path):
    run = fit("--results", store, "--out", tmp_path / "a", "--bootstrap", "20")
    assert run.returncode == 0, run.stderr
    assert "near" in run.stdout and "far" in run.stdout and "1 − e_IR" in run.stdout
    assert "0.950" in run.stdout and "0.700" in run.stdout  # the saturation values
    fits = pd.read_parquet(tmp_path / "a" / "fits.parquet")
    assert sorted(fits["task"]) == ["far", "near"]
    assert fits.set_index("task").loc["far", "e_ir"] == pytest.approx(0.3, abs=1e-3)


def test_default_out_is_next_to_the_results(store):
    run = fit("--results", store, "--bootstrap", "0", "--format", "csv")
    assert run.returncode == 0, run.stderr
    assert (store.parent / "analysis" / "fits.parquet").is_file()
    assert not list(store.rglob("fits.parquet"))  # never inside the store: it would read as a part


def test_csv_json_markdown(store, tmp_path):
    csv = fit("--results", store, "--out", tmp_path, "--bootstrap", "0", "--format", "csv")
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert {"k", "alpha", "e_ir", "saturation", "pred_error", "e_ir_lo"} <= set(frame.columns)
    records = json.loads(
        fit("--results", store, "--out", tmp_path, "--bootstrap", "0", "--format", "json").stdout
    )
    assert len(records) == 2 and records[0]["status"] == "ok"
    md = fit(
        "--results", store, "--out", tmp_path, "--bootstrap", "0", "--format", "markdown"
    ).stdout
    assert md.startswith("| upstream | task |") and md.count("\n") == 4


def test_power_form_and_all_points(store, tmp_path):
    run = fit(
        "--results",
        store,
        "--out",
        tmp_path,
        "--bootstrap",
        "0",
        "--form",
        "power",
        "--points",
        "all",
        "--format",
        "csv",
    )
    frame = pd.read_csv(io.StringIO(run.stdout))
    assert set(frame["form"]) == {"power"} and set(frame["points"]) == {"all"}
    assert (frame["saturation"] == 1).all()


def one_line_error(run, *needles):
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layerprobe: error:"), run.stderr
    for needle in needles:
        assert needle in lines[0]


def test_no_upstream_accuracy(tmp_path):
    rows = probe_rows(0.5, upstream_accuracy=None) + probe_rows(
        0.6, upstream_accuracy=None, model_key="m1"
    )
    one_line_error(
        fit("--results", write_store(rows, tmp_path / "r"), "--out", tmp_path / "o"),
        "layerprobe upstream",
    )


def test_nothing_to_fit(tmp_path):
    rows = probe_rows(0.5, upstream_accuracy=0.5) + probe_rows(
        0.6, upstream_accuracy=0.7, model_key="m1"
    )
    run = fit("--results", write_store(rows, tmp_path / "r"), "--out", tmp_path / "o")
    assert run.returncode == 2
    assert "only 2 hull point" in run.stderr  # the warning, then the error
    assert run.stderr.strip().splitlines()[-1].startswith("layerprobe: error: nothing to fit")


def test_out_is_a_file(store, tmp_path):
    (tmp_path / "f").write_text("x")
    one_line_error(fit("--results", store, "--out", tmp_path / "f"), "is a file")


def test_missing_results_and_bad_options(store, tmp_path):
    one_line_error(fit("--results", tmp_path / "nope"), "does not exist")
    one_line_error(fit("--results", store, "--holdout-top", "2"), "holdout")
    one_line_error(fit("--results", store, "--layer", "blocks.9"), "blocks.0")
    one_line_error(fit("--results", store, "--points", "convex"))
