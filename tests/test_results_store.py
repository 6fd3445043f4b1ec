"""The store's one reader (`results.store.read`) and its writer: one generation per result,
every part validated alike by `results show`, `fit` and `report`, finite accuracies only, and
the upstream record reaching the rows — each on stores the real code wrote."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from cachefiles import write_task

from layerprobe.cli import main
from layerprobe.errors import DataError
from layerprobe.results import load, read_selected
from layerprobe.results.parts import write_part
from tests.helpers_pretrain import lp_home_fixture  # noqa: F401 - fixture
from tests.results_data import curve_store, probe_rows, write_store

L2 = "2**-10,1,2**10"
KEY = "toy-0123456789ab"


def probe(tmp_path, *extra) -> int:
    args = ["probe", "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "res")]
    return main([*args, "--l2", L2, *extra])


def parts(folder) -> list:
    return sorted(folder.rglob("*.parquet"))


def accuracies(table: pd.DataFrame) -> pd.DataFrame:
    key = ["task", "layer", "shots", "seed", "l2"]
    return table.sort_values(key)[[*key, "test_accuracy", "val_accuracy"]].reset_index(drop=True)


# -- generations ---------------------------------------------------------------------------------


def test_seeds_3_then_2_after_new_test_images_serves_only_the_new_rows(tmp_path, capsys):
    cache = tmp_path / "cache"
    write_task(cache)
    assert probe(tmp_path, "--shots", "5", "--seeds", "3", "--quiet") == 0
    # The test images change and are extracted again (other features, a new file).
    write_task(cache, rows={"test": 10}, signal={"blocks.0": 0.2, "blocks.1": 0.2, "pre_logits": 0})
    capsys.readouterr()
    assert probe(tmp_path, "--shots", "5", "--seeds", "2") == 0
    err = capsys.readouterr().err
    assert f"probing again {KEY}/toy: its cache files changed" in err
    assert len(parts(tmp_path / "res")) == 1  # the superseded part is gone
    served = load(tmp_path / "res")
    assert set(served.seed) == {0, 1}
    # exactly the rows a fresh store probed from the new caches holds
    fresh = tmp_path / "fresh"
    assert (
        main(
            [
                "probe",
                "--cache",
                str(cache),
                "--results",
                str(fresh),
                "--l2",
                L2,
                "--shots",
                "5",
                "--seeds",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(accuracies(served), accuracies(load(fresh)))
    assert main(["results", "show", "--results", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert "(2 seeds;" in out and "3 seeds" not in out


def test_shots_1_5_then_5_leaves_no_stale_1_shot_rows_even_after_a_crash(tmp_path, capsys):
    write_task(tmp_path / "cache")
    assert probe(tmp_path, "--shots", "1,5", "--seeds", "2", "--quiet") == 0
    (old,) = parts(tmp_path / "res")
    kept = tmp_path / "old.parquet"
    shutil.copy(old, kept)
    capsys.readouterr()
    assert probe(tmp_path, "--shots", "5", "--seeds", "2") == 0
    assert "shots [1, 5] -> [5]" in capsys.readouterr().err
    (new,) = parts(tmp_path / "res")
    assert new != old and set(load(tmp_path / "res").shots) == {5}
    # A crash between the new part's rename and the old part's removal leaves both: the reader
    # still serves one generation, in every command.
    shutil.copy(kept, old)
    assert len(parts(tmp_path / "res")) == 2
    assert set(load(tmp_path / "res").shots) == {5}
    assert set(read_selected(tmp_path / "res").shots) == {5}
    assert main(["results", "show", "--results", str(tmp_path / "res")]) == 0
    assert "1-shot" not in capsys.readouterr().out


def test_other_probe_configurations_are_not_superseded(tmp_path):
    write_task(tmp_path / "cache")
    assert probe(tmp_path, "--shots", "5", "--seeds", "1", "--quiet") == 0
    assert probe(tmp_path, "--shots", "5", "--seeds", "1", "--l2-select", "fixed:1", "--quiet") == 0
    assert len(parts(tmp_path / "res")) == 2
    assert set(load(tmp_path / "res").l2_select) == {"val", "fixed:1"}


# -- one reader for every command ----------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    """A small store with upstream accuracy (so `fit` and `report` have something to do)."""
    return curve_store(tmp_path / "res", {"near": (0.9, 1.5, 0.05)}, n=6)


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


def commands(store, tmp_path) -> dict[str, list]:
    return {
        "show": ["results", "show", "--results", store],
        "fit": ["fit", "--results", store, "--bootstrap", 0, "--out", tmp_path / "fit"],
        "report": [
            "report",
            "--results",
            store,
            "--bootstrap",
            0,
            "--out",
            tmp_path / "rep",
            "--quiet",
        ],
    }


def test_a_renamed_part_is_refused_alike_by_show_fit_and_report(store, tmp_path, capsys):
    part = parts(store)[0]
    renamed = part.with_name(re.sub(r"\.[0-9a-f]{16}\.", ".0123456789abcdef.", part.name))
    part.rename(renamed)
    for name, args in commands(store, tmp_path).items():
        code, _, err = run(capsys, *args)
        assert code == 2, name
        assert f"results part {renamed} does not carry the identity its name says" in err, name
        assert err.count("\n") == 1, name
        code, _, err = run(capsys, *args, "--skip-bad")
        assert code == 0, (name, err)
        assert f"skipping results part {renamed}: it does not carry" in err, name
        assert "--skip-bad" not in err, name  # the warning does not advise what was done


def poison(path, value: float, *, layer: str = "pre_logits") -> None:
    """Write ``value`` into the selected test accuracy of ``layer`` of a part, with pyarrow."""
    table = pq.read_table(path)
    where = pc.and_(table["selected"], pc.equal(table["layer"], layer))
    column = pc.if_else(where, pa.scalar(value), table["test_accuracy"])
    table = table.set_column(table.schema.get_field_index("test_accuracy"), "test_accuracy", column)
    pq.write_table(table, path)  # the footer metadata (identity, version) is kept


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_part_is_refused_or_skipped_naming_the_file(store, tmp_path, capsys, value):
    bad = parts(store)[0]
    poison(bad, value)
    with pytest.raises(DataError, match="non-finite"):
        load(store)
    for name, args in commands(store, tmp_path).items():
        code, out, err = run(capsys, *args)
        assert code == 2 and f"results part {bad} holds non-finite" in err, (name, err)
        assert err.count("\n") == 1, name
        code, out, err = run(capsys, *args, "--skip-bad")
        assert code == 0 and f"skipping results part {bad}" in err, (name, err)
        assert not re.search(r"\b(nan|inf)\b", out, re.I), name
    # skipped, the rest is served, and the analysis tables hold numbers only
    fits = pd.read_parquet(tmp_path / "rep" / "fits.parquet")
    assert fits[["k", "alpha", "e_ir", "fit_error"]].notna().all().all()
    assert len(fits) == 1 and fits["n_checkpoints"].iloc[0] == 5
    html = (tmp_path / "rep" / "report.html").read_text()
    assert not re.search(r">\s*(nan|inf)", html, re.I)


def test_the_writer_refuses_non_finite_accuracies(tmp_path):
    rows = pd.DataFrame(probe_rows(0.5))
    rows.loc[0, "test_accuracy"] = np.inf
    identity = {"model_key": "m0", "task": "t", "probe": "ridge"}
    with pytest.raises(DataError, match="test_accuracy value\\(s\\) are NaN or infinite"):
        write_part(rows, tmp_path, identity)
    assert parts(tmp_path) == []


def test_fit_shots_that_the_store_lacks_names_those_it_has(store, tmp_path, capsys):
    for args in (commands(store, tmp_path)["fit"], commands(store, tmp_path)["report"]):
        code, _, err = run(capsys, *args, "--shots", "7")
        assert code == 2 and "no results with 7 shots; the store has shots 5" in err
        assert "no results at layer" not in err and err.count("\n") == 1


# -- upstream.json -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, says",
    [
        (json.dumps({"upstream_task": "u", "upstream_accuracy": 7.5}), "not a number in [0, 1]"),
        (json.dumps({"upstream_task": "u", "upstream_accuracy": float("nan")}), "not a number"),
        ('{"upstream_task": "u", "upstream_acc', "not readable JSON"),
        (json.dumps([0.5]), "not a JSON object"),
    ],
)
def test_a_damaged_or_absurd_upstream_json_is_refused_naming_it(tmp_path, capsys, text, says):
    write_task(tmp_path / "cache")
    record = tmp_path / "cache" / KEY / "upstream.json"
    record.write_text(text)
    code, _, err = run(
        capsys,
        *[
            "probe",
            "--cache",
            tmp_path / "cache",
            "--results",
            tmp_path / "res",
            "--shots",
            "1",
            "--seeds",
            "1",
        ],
    )
    assert code == 2 and f"upstream record {record}" in err and says in err
    assert err.count("\n") == 1 and parts(tmp_path) == []


def test_upstream_measured_after_probe_reaches_the_rows_without_force(tmp_path, lp_home):
    from layerprobe.backbones import ModelConfig
    from layerprobe.extract import ExtractConfig, extract
    from layerprobe.pretrain import upstream_accuracy
    from layerprobe.probe import ProbeConfig, probe_cache

    model = ModelConfig("python:tests.helpers_models:tiny_convnet", image_size=32)
    task, cache, results = "builtin/objects-colour", tmp_path / "cache", tmp_path / "res"
    extract(model, task, ExtractConfig(cache_dir=cache, quiet=True, layers="pre_logits"))
    config = ProbeConfig(shots=[5], seeds=1, l2s=[1.0])
    probe_cache(cache, results, config)
    assert load(results)["upstream_accuracy"].isna().all()
    acc = upstream_accuracy(model, task, "val", cache_dir=cache, device="cpu")
    summary = probe_cache(cache, results, config)  # no --force
    assert len(summary.written) == 1 and "an upstream accuracy was recorded" in summary.again[0]
    rows = load(results)
    assert (rows["upstream_accuracy"] == acc).all() and (rows["upstream_task"] == task).all()
    assert len(parts(results)) == 1
    assert probe_cache(cache, results, config).written == []  # and then it is done


def test_the_duplicate_check_answers_as_pandas_on_every_kind_of_key_column():
    """The reader's fast duplicate check (codes in mixed radix) against pandas' own, on key
    columns of each kind the store has: categoricals with missing values, integers, text,
    floats with NaN — with and without a duplicated row."""
    from layerprobe.results.store import _any_duplicate

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        frame = pd.DataFrame(
            {
                "model_key": pd.Categorical(rng.choice(["a", "b", None], n)),
                "shots": rng.integers(1, 4, n),
                "config": rng.choice(["c0", "c1"], n).astype(object),
                "l2": rng.choice([0.5, 1.0, np.nan], n),
                "seed": rng.integers(0, 1000 if trial % 2 else 3, n),
            }
        )
        for key in (["model_key", "shots"], ["model_key", "shots", "config", "l2", "seed"]):
            assert _any_duplicate(frame, key) == frame.duplicated(key).any(), (trial, key)


# -- listing the parts ---------------------------------------------------------------------------


def test_part_files_come_in_path_order_skipping_temporaries_and_linked_folders(tmp_path):
    from layerprobe.results.parts import part_files

    names = [
        "m1/a.parquet",
        "m1-b/a.parquet",  # '-' sorts before '/' as text, after it as a path part
        "m1.parquet",
        "m1/sub/c.parquet",
        "M0/a.parquet",
        ".hidden/d.parquet",  # a part below a dot-folder is still a part
        "m1/.tmp-writer.parquet",  # a writer's temporary file is not
        "m1/notes.txt",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.parquet").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    found = part_files(tmp_path)
    expected = sorted(
        p for p in tmp_path.rglob("*.parquet") if not p.name.startswith(".")
    )  # what the reader listed before: Path.rglob does not follow linked folders either
    assert found == expected
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        ".hidden/d.parquet",
        "M0/a.parquet",
        "elsewhere/e.parquet",
        "m1/a.parquet",
        "m1/sub/c.parquet",
        "m1-b/a.parquet",
        "m1.parquet",
    ]


def test_a_store_folder_that_cannot_be_listed_is_one_line_not_missing_parts(tmp_path, monkeypatch):
    import os

    from layerprobe.results import parts

    write_store(probe_rows(0.5), tmp_path)
    (tmp_path / "m2").mkdir()
    real = os.scandir

    def scandir(folder):  # as for a folder without read permission, for any user (root too)
        if str(folder).endswith("m2"):
            raise PermissionError(13, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(parts.os, "scandir", scandir)
    with pytest.raises(DataError, match=r"cannot list .*m2 \(Permission denied\); give this user"):
        parts.part_files(tmp_path)
    assert main(["results", "show", "--results", str(tmp_path)]) == 2
