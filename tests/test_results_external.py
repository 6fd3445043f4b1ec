"""External tables: a plain CSV / Parquet of US and DS accuracies analysed like the store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from layerprobe.cli import main
from layerprobe.errors import DataError
from layerprobe.results.external import read_table
from layerprobe.results.read import read_selected
from tests.helpers_cli import layerprobe_shell
from tests.results_data import curve_ds, curve_store

TRUTH = {"near": (0.9, 1.5, 0.05), "far": (0.6, 2.5, 0.3)}  # task: k, α, e_IR


def published(n: int = 13) -> pd.DataFrame:
    """A paper-style table: one row per (model, task), DS on the known curves (odd models 0.05
    below it), two architecture families."""
    rows = []
    for i, us in enumerate(np.linspace(0.3, 0.9, n)):
        for task, (k, alpha, e_ir) in TRUTH.items():
            ds = float(curve_ds(us, k, alpha, e_ir)) - (0.05 if i % 2 else 0.0)
            rows.append(
                dict(
                    model=f"net-{i}",
                    family="vit" if i < n // 2 else "resnet",
                    upstream_accuracy=round(float(us), 6),
                    task=task,
                    test_accuracy=ds,
                )
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("external")
    table = published()
    table.to_csv(folder / "paper.csv", index=False)
    table.to_parquet(folder / "paper.parquet", index=False)
    return folder


def run_cli(args, capsys) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_csv_fit_end_to_end_from_the_shell(tables, tmp_path):
    run = layerprobe_shell(
        "fit", "--results", tables / "paper.csv", "--out", tmp_path, "--format", "json"
    )
    assert run.returncode == 0, run.stderr
    fits = {r["task"]: r for r in json.loads(run.stdout)}
    for task, (_, _, e_ir) in TRUTH.items():
        assert fits[task]["shots"] == 0 and fits[task]["layer"] == "pre_logits"
        assert fits[task]["e_ir_lo"] <= e_ir <= fits[task]["e_ir_hi"]
        assert fits[task]["e_ir"] == pytest.approx(e_ir, abs=1e-3)
    assert (tmp_path / "fits.parquet").is_file()


def test_parquet_fit_with_a_family_column(tables, tmp_path, capsys):
    args = ["fit", "--results", tables / "paper.parquet", "--out", tmp_path, "--format", "json"]
    code, out, err = run_cli([*args, "--group-by", "family"], capsys)
    assert code == 0, err
    fits = pd.DataFrame(json.loads(out))
    assert sorted(set(fits["group"])) == ["resnet", "vit"]
    assert sorted(set(fits["task"])) == ["far", "near"]


def test_a_table_is_analysed_exactly_like_the_store(tmp_path, capsys):
    """The store's selected rows exported to CSV (as someone would publish them) fit to the same
    numbers as the store itself."""
    store = curve_store(tmp_path / "res", TRUTH)
    rows = read_selected(store)
    path = tmp_path / "export.csv"
    rows.to_csv(path, index=False)
    fits = []
    for source in (store, path):
        args = ["fit", "--results", source, "--out", tmp_path / "a", "--format", "json"]
        code, out, err = run_cli([*args, "--layer", "best"], capsys)
        assert code == 0, err
        fits.append(pd.DataFrame(json.loads(out)).set_index("task"))
    columns = ["status", "n_fit", "e_ir", "e_ir_lo", "e_ir_hi", "k", "alpha", "pred_error"]
    pd.testing.assert_frame_equal(fits[0][columns], fits[1][columns], check_exact=False)


def test_results_show_and_report_read_a_table(tables, tmp_path, capsys):
    code, out, err = run_cli(["results", "show", "--results", tables / "paper.csv"], capsys)
    assert code == 0, err
    assert "net-12" in out and "pre_logits" in out
    report = tmp_path / "report"
    args = ["report", "--results", tables / "paper.csv", "--out", report, "--quiet"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    page = (report / "report.html").read_text()
    assert "Saturation fit" in page and "Head knobs: matched pairs" in page
    assert "head_wd is not recorded" in page  # a table without knobs says so
    assert len(pd.read_parquet(report / "fits.parquet")) == 2


def test_defaults_of_a_minimal_table(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame(
        dict(
            model=["a", "b"],
            upstream_accuracy=[0.5, 0.6],
            task=["x", "x"],
            test_accuracy=[0.2, 0.3],
            params=[1e6, 2e6],
        )
    ).to_csv(path, index=False)
    rows = read_table(path)
    assert list(rows["model_key"]) == ["a", "b"]
    assert set(rows["layer"]) == {"pre_logits"} and set(rows["depth"]) == {1.0}
    assert set(rows["shots"]) == {0} and set(rows["seed"]) == {0} and rows["selected"].all()
    assert list(rows["params"]) == [1e6, 2e6] and rows["head_wd"].isna().all()


def bad_tables(folder):
    base = published(5)
    cases = {}

    def write(name, frame, text=None):
        path = folder / name
        if text is not None:
            path.write_text(text)
        elif name.endswith(".csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        cases[name] = path

    write("percent.csv", base.assign(test_accuracy=base["test_accuracy"] * 100))
    write("percent_us.parquet", base.assign(upstream_accuracy=base["upstream_accuracy"] * 100))
    write("no_task.csv", base.drop(columns="task"))
    write("negative.csv", base.assign(test_accuracy=base["test_accuracy"] - 0.9))
    write("over.csv", base.assign(test_accuracy=base["test_accuracy"] + 200))
    nan = base.copy()
    nan.loc[3, "test_accuracy"] = np.nan
    write("nan.csv", nan)
    write("words.csv", base.assign(upstream_accuracy="high"))
    write("broken.parquet", None, text="this is not parquet")
    write("twice.csv", pd.concat([base, base.head(1)]))
    write("layers_no_depth.csv", base.assign(layer="blocks.3"))
    two_us = base.copy()
    two_us.loc[0, "upstream_accuracy"] = 0.99  # net-0's other row says 0.3
    write("two_us.csv", two_us)
    return cases


EXPECT = {
    "percent.csv": "test_accuracy goes up to",
    "percent_us.parquet": "upstream_accuracy goes up to",
    "no_task.csv": "lacks the required column(s) task",
    "negative.csv": "outside [0, 1]",
    "over.csv": "outside [0, 1]",
    "nan.csv": "test_accuracy is missing or not finite in 1 row(s) (first: row 4)",
    "words.csv": "upstream_accuracy holds non-numbers",
    "broken.parquet": "is a file that cannot be read as a Parquet table",
    "twice.csv": "give the same result twice",
    "layers_no_depth.csv": "no depth column",
    "two_us.csv": "upstream_accuracy differs between the rows of model 'net-0'",
}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_bad_tables_are_one_line_exit_2(name, tmp_path, capsys):
    path = bad_tables(tmp_path)[name]
    for command in (["fit"], ["results", "show"]):
        args = [*command, "--results", path]
        if command == ["fit"]:
            args += ["--out", tmp_path / "out"]
        code, out, err = run_cli(args, capsys)
        assert code == 2 and len(err) == 1 and EXPECT[name] in err[0], err
        assert "Traceback" not in "\n".join(err) and out == ""
    if name.startswith("percent"):
        assert "looks like percent: divide by 100" in err[0]
    with pytest.raises(DataError):
        read_table(path)


def test_missing_file_and_unknown_group_by_are_one_line_exit_2(tables, tmp_path, capsys):
    code, _, err = run_cli(["fit", "--results", tmp_path / "nope.csv"], capsys)
    assert code == 2 and len(err) == 1 and "nope.csv does not exist" in err[0]
    other = tmp_path / "table.txt"
    other.write_text("model,task\n")
    code, _, err = run_cli(["results", "show", "--results", other], capsys)
    assert code == 2 and len(err) == 1 and "not a .csv or .parquet table" in err[0]
    args = ["fit", "--results", tables / "paper.csv", "--out", tmp_path, "--group-by", "famly"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and len(err) == 1 and "--group-by 'famly': no such column" in err[0]
    assert "family" in err[0]  # the table's own columns are offered
