"""Reading the results store (`layerprobe.results.load`) and `layerprobe results show`."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from layerprobe.cli import main
from layerprobe.errors import DataError
from layerprobe.results import layer_summary, load, selected
from layerprobe.results.parts import write_part
from layerprobe.results.schema import COLUMNS, PRETRAIN_COLUMNS, SCHEMA_VERSION
from tests.results_data import row


def rows(
    task="toy", model_key="m-1", accs=None, seeds=(0, 1), shots=5, created=None
) -> pd.DataFrame:
    """Store rows: layers with per-seed test accuracies at λ=1 (validation best) and λ=2."""
    accs = accs or {"blocks.0": [0.5, 0.6], "pre_logits": [0.8, 0.9]}
    out = []
    for depth, (layer, per_seed) in enumerate(accs.items()):
        for seed, acc in zip(seeds, per_seed, strict=True):
            for l2, val, test in ((1.0, 0.9, acc), (2.0, 0.4, 0.0)):
                out.append(
                    row(
                        model="timm:m",
                        model_key=model_key,
                        **dict.fromkeys(PRETRAIN_COLUMNS),  # nothing known of pre-training
                        task=task,
                        layer=layer,
                        depth=float(depth),
                        shots=shots,
                        seed=seed,
                        l2=l2,
                        val_accuracy=val,
                        test_accuracy=test,
                        n_train=5,
                        n_test=10,
                        created_at=created or pd.Timestamp(datetime.now(UTC)),
                        selected=l2 == 1.0,
                    )
                )
    return pd.DataFrame(out)


def write(frame: pd.DataFrame, store, tag="a"):
    """A part of the store holding ``frame`` (one model key and task)."""
    identity = {
        "model_key": frame.model_key.iloc[0],
        "task": frame.task.iloc[0],
        "probe": "ridge",
        "tag": tag,
    }
    return write_part(frame, store, identity)


@pytest.fixture
def store(tmp_path):
    write(rows(), tmp_path)
    write(rows(task="other", accs={"blocks.0": [0.7, 0.7], "pre_logits": [0.2, 0.4]}), tmp_path)
    return tmp_path


def show(store, *extra) -> int:
    return main(["results", "show", "--results", str(store), *extra])


def test_load_returns_every_row(store):
    table = load(store)
    assert isinstance(table, pd.DataFrame) and len(table) == 16
    assert list(table.columns) == COLUMNS and (table.schema_version == SCHEMA_VERSION).all()


def test_newer_rerun_replaces_older_rows(store):
    old = pd.Timestamp("2020-01-01", tz="UTC")
    write(rows(accs={"blocks.0": [0.1, 0.1], "pre_logits": [0.1, 0.1]}, created=old), store, "b")
    table = load(store)
    assert len(table) == 16 and table[table.task == "toy"].test_accuracy.max() == 0.9


def test_two_configurations_of_one_probe_are_never_mixed(store):
    other = rows(accs={"blocks.0": [0.1, 0.1], "pre_logits": [0.1, 0.1]})
    other["config"] = "c1"  # e.g. another λ grid: newer, but not the same result
    write(other, store, "b")
    table = load(store)
    assert len(table) == 24 and set(table.config) == {"c0", "c1"}
    summary = layer_summary(table[table.task == "toy"])
    assert len(summary) == 4  # a block per configuration, never an average across them


def test_selected_rows_are_the_stored_choice():
    table = rows()
    table.loc[table.l2 == 2.0, "val_accuracy"] = 0.95  # a better val accuracy, not chosen
    assert set(selected(table).l2) == {1.0}  # the stored `selected` column is the one truth


def test_summary_is_mean_std_over_seeds_with_best_layer(store):
    summary = layer_summary(load(store))
    toy = summary[summary.task == "toy"].set_index("layer")
    assert toy.loc["pre_logits", "accuracy"] == pytest.approx(0.85)
    assert toy.loc["pre_logits", "std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert toy.best.tolist() == [False, True] and (toy.seeds == 2).all()
    other = summary[summary.task == "other"].set_index("layer")
    assert other.best.tolist() == [True, False]  # an early layer can be the best


def test_show_text_marks_the_best_layer(store, capsys):
    assert show(store) == 0
    out = capsys.readouterr().out
    assert out.index("  other  ") < out.index("  toy  ")  # one block per model × task × shots
    best_lines = [line for line in out.splitlines() if "best" in line]
    assert len(best_lines) == 2
    assert any("pre_logits" in line and "85.0" in line for line in best_lines)
    assert any("blocks.0" in line and "70.0" in line for line in best_lines)


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown"])
def test_show_formats_and_filters(store, capsys, fmt):
    assert show(store, "--format", fmt, "--task", "toy", "--shots", "5") == 0
    out = capsys.readouterr().out
    if fmt == "csv":
        table = pd.read_csv(io.StringIO(out))
        assert set(table.task) == {"toy"} and table.best.sum() == 1
    elif fmt == "json":
        records = json.loads(out)
        assert {r["layer"] for r in records} == {"blocks.0", "pre_logits"}
    else:
        assert out.startswith("| model |") and out.count("**best**") == 1 and "other" not in out


def test_show_errors_are_one_line(tmp_path, store, capsys):
    (tmp_path / "empty").mkdir()
    assert show(tmp_path / "empty") == 2
    assert "no results" in capsys.readouterr().err
    assert show(tmp_path / "missing") == 2
    assert "does not exist" in capsys.readouterr().err
    assert show(store, "--task", "toi") == 2
    assert "did you mean" in capsys.readouterr().err.lower()


def test_unreadable_part_is_named_and_can_be_skipped(store, capsys):
    bad = store / "m-1" / "broken.ridge.0123456789abcdef.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    assert show(store) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1
    with pytest.raises(DataError, match="broken"):
        load(store)
    assert show(store, "--skip-bad") == 0
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "pre_logits" in captured.out


def test_results_path_that_is_a_file_says_so(tmp_path, capsys):
    (tmp_path / "res.parquet").write_bytes(b"PAR1")
    assert show(tmp_path / "res.parquet") == 2
    err = capsys.readouterr().err.strip()
    assert "is a file" in err and "does not exist" not in err and "\n" not in err


def test_part_not_written_by_layerprobe_is_a_one_line_error(store, capsys):
    foreign = rows(task="foreign").astype({"shots": str})
    foreign.to_parquet(store / "m-1" / "foreign.parquet")
    assert show(store) == 2
    err = capsys.readouterr().err.strip()
    assert "foreign.parquet was not written by layerprobe" in err and "\n" not in err
    assert show(store, "--skip-bad") == 0
    assert "foreign" not in capsys.readouterr().out


def test_part_of_another_schema_version_says_what_to_do(store, capsys):
    import pyarrow.parquet as pq

    path = next(store.rglob("toy.*.parquet"))
    table = pq.read_table(path)
    meta = dict(table.schema.metadata) | {b"layerprobe_schema_version": b"1"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    assert show(store) == 2
    err = capsys.readouterr().err.strip()
    assert "results schema 1" in err and "new --results folder" in err and "\n" not in err


def test_part_renamed_or_copied_over_another_is_refused(store, capsys):
    toy, other = sorted(store.rglob("*.parquet"), key=lambda p: "other" in p.name)
    other.write_bytes(toy.read_bytes())  # the toy rows under the other task's name
    assert show(store) == 2
    assert "does not carry the identity its name says" in capsys.readouterr().err
