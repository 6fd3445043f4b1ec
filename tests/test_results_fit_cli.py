"""`layerprobe fit` as a user runs it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import io
import json
import subprocess
from contextlib import redirect_stderr, redirect_stdout

import pandas as pd
import pytest

from layerprobe.cli import main
from tests.results_data import curve_store, probe_rows, write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return curve_store(
        tmp_path_factory.mktemp("cli") / "res", {"near": (0.9, 1.5, 0.05), "far": (0.6, 2.5, 0.3)}
    )


def fit(*args) -> subprocess.CompletedProcess:
    """``layerprobe fit ARGS``: its exit status and what it wrote to stdout and stderr. It runs
    in this process (a fresh Python per call cost ten times the file's time); the shell's own
    run of ``layerprobe fit`` is test_results_external.py's."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(["fit", *map(str, args)])
        except SystemExit as exit_:  # argparse's own exit
            code = exit_.code
    return subprocess.CompletedProcess(
        ["layerprobe", "fit", *args], code, out.getvalue(), err.getvalue()
    )


def test_table_and_fits_parquet(store, tmp_path):
    run = fit("--results", store, "--out", tmp_path / "a")
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


def test_status_intervals_and_held_out_counts_in_every_format(store, tmp_path):
    records = json.loads(
        fit("--results", store, "--out", tmp_path, "--holdout", "3", "--format", "json").stdout
    )
    for rec in records:
        for key in ("task", "shots", "status", "e_ir", "e_ir_lo", "e_ir_hi", "k_lo", "k_hi"):
            assert key in rec
        assert rec["alpha_lo"] <= rec["alpha"] <= rec["alpha_hi"]
        assert rec["n_points"] == 7 and rec["n_targets"] >= 3
        assert rec["pred_error_hull"] < rec["pred_error_all"]
    table = fit("--results", store, "--out", tmp_path, "--format", "table").stdout
    assert "ok" in table and "prediction error hull / all (n)" in table


def test_undetermined_fit_shows_only_its_interval(tmp_path):
    # 4 checkpoints on a curve: few_points; the table shows the interval, not an estimate
    rows = []
    for i, u in enumerate((0.3, 0.5, 0.7, 0.9)):
        acc = 1 - (0.8 * (1 - u) ** 2 + 0.2)
        rows += probe_rows(acc, spread=0.01, model_key=f"m{i}", upstream_accuracy=u, task="few")
    run = fit("--results", write_store(rows, tmp_path / "r"), "--out", tmp_path / "o")
    assert run.returncode == 0, run.stderr
    line = [x for x in run.stdout.splitlines() if "few_points" in x][0]
    e_ir = pd.read_parquet(tmp_path / "o" / "fits.parquet").iloc[0]
    assert f"[{e_ir.e_ir_lo:.3f}, {e_ir.e_ir_hi:.3f}]" in line
    assert f"{e_ir.e_ir:.3f} [" not in line


def test_group_by(tmp_path):
    rows = []
    for family, e_ir in (("vit", 0.1), ("cnn", 0.4)):
        for i, u in enumerate((0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)):
            acc = 1 - (0.7 * (1 - u) ** 2 + e_ir)
            rows += probe_rows(
                acc, spread=0.005, model=family, model_key=f"{family}{i}", upstream_accuracy=u
            )
    store = write_store(rows, tmp_path / "r")
    run = fit("--results", store, "--out", tmp_path / "o", "--group-by", "model", "--format", "csv")
    assert run.returncode == 0, run.stderr
    frame = pd.read_csv(io.StringIO(run.stdout)).set_index("group")
    assert frame.loc["vit", "e_ir"] == pytest.approx(0.1, abs=0.01)
    assert frame.loc["cnn", "e_ir"] == pytest.approx(0.4, abs=0.01)
    one_line_error(fit("--results", store, "--group-by", "family"), "--group-by", "model")
    one_line_error(fit("--results", store, "--group-by", "seed"), "varies within a checkpoint")


def test_out_is_a_file(store, tmp_path):
    (tmp_path / "f").write_text("x")
    one_line_error(fit("--results", store, "--out", tmp_path / "f"), "is a file")


def test_missing_results_and_bad_options(store, tmp_path):
    one_line_error(fit("--results", tmp_path / "nope"), "does not exist")
    one_line_error(fit("--results", store, "--holdout-top", "2"), "holdout")
    one_line_error(fit("--results", store, "--holdout", "2"), "at least 3")
    one_line_error(fit("--results", store, "--max-width", "0"), "max-width")
    one_line_error(fit("--results", store, "--layer", "blocks.9"), "blocks.0")
    one_line_error(fit("--results", store, "--points", "convex"))
