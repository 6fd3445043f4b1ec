"""`layerprobe tasks`: text and JSON listing, filters, and one-line errors."""

from __future__ import annotations

import json
import pickle

import pytest
from test_tasks_real_common import class_tree

from layerprobe.cli import main


@pytest.fixture
def root(tmp_path):
    """A data root with UC Merced (6 images) and a corrupt image that listing must not decode."""
    top = tmp_path / "uc_merced" / "UCMerced_LandUse" / "Images"
    class_tree(top, {"agricultural": 3, "airplane": 3}, ".tif")
    (top / "airplane" / "airplane_001.tif").write_bytes(b"broken")
    return tmp_path


def run(capsys, *argv):
    code = main(["tasks", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lists_every_real_task_with_the_documented_keys(capsys, root):
    code, out, _ = run(capsys, "--data-root", str(root), "--format", "json", "--real")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert len(rows) == 44
    for r in rows.values():
        assert set(r) == {"name", "group", "num_classes", "splits", "found", "description"}
    assert rows["uc_merced"]["found"] is True
    assert rows["uc_merced"]["splits"] == {"train": 6, "val": 0, "test": 0}
    assert rows["uc_merced"]["num_classes"] == 21 and rows["uc_merced"]["group"] == "specialized"
    assert rows["vtab1k/cifar100"] == {
        "name": "vtab1k/cifar100",
        "group": "natural",
        "num_classes": 100,
        "splits": {"train": None, "val": None, "test": None},
        "found": False,
        "description": rows["vtab1k/cifar100"]["description"],
    }


def test_text_shows_sizes_found_and_what_was_looked_for(capsys, root):
    code, out, _ = run(capsys, "--data-root", str(root), "uc_merced", "cifar100", "smallnorb_*")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"data root: {root}"
    row = next(line for line in lines if line.startswith("uc_merced "))
    assert (
        "specialized" in row
        and " 21 " in row
        and "train 6, val 0, test 0" in row
        and row.endswith("found")
    )
    row = next(line for line in lines if line.startswith("cifar100 "))
    assert (
        f"missing: {root / 'cifar-100-python' / 'train'} (+2 more); get it from https://www.cs.toronto.edu"
        in row
    )
    assert sum(line.startswith("smallnorb_") for line in lines) == 2
    assert lines[-1] == "4 tasks, 1 with data found"


def test_data_root_comes_from_the_environment(capsys, root, monkeypatch):
    monkeypatch.setenv("LAYERPROBE_DATA", str(root))
    code, out, _ = run(capsys, "--format", "json", "uc_merced")
    assert code == 0 and json.loads(out)[0]["found"] is True
    monkeypatch.delenv("LAYERPROBE_DATA")
    code, out, _ = run(capsys, "uc_merced")
    assert "data root: not set" in out and "missing: $LAYERPROBE_DATA/uc_merced" in out


def test_present_but_unreadable_data_is_reported_not_raised(capsys, tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    for name in ("train", "test", "meta"):
        (base / name).write_bytes(pickle.dumps("not a batch")[:5])
    code, out, _ = run(capsys, "--data-root", str(tmp_path), "--format", "json", "cifar100")
    assert code == 0
    row = json.loads(out)[0]
    assert row["found"] is False
    code, out, _ = run(capsys, "--data-root", str(tmp_path), "cifar100")
    assert code == 0 and f"missing: cannot read {base}" in out


def test_vtab1k_pattern_and_kind_filters(capsys):
    code, out, _ = run(capsys, "--format", "json", "vtab1k/*")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 19
    assert {r["group"] for r in rows} == {"natural", "specialized", "structured"}
    code, _, err = run(capsys, "--builtin", "vtab1k/*")  # real tasks are not in the built-in suite
    assert code == 2 and "no task matches 'vtab1k/*'" in err
    code, out, _ = run(capsys, "--format", "json", "--real")
    assert not any(r["name"].startswith("builtin/") for r in json.loads(out))


def test_unknown_task_is_a_one_line_error_with_suggestions(capsys):
    code, out, err = run(capsys, "vtab1k/cifar_100")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        "layerprobe: error: no task matches 'vtab1k/cifar_100'. Did you mean: vtab1k/cifar100"
    )


def test_verbose_shows_each_task_split_convention(capsys, root):
    code, out, _ = run(capsys, "--data-root", str(root), "-v", "uc_merced", "vtab1k/pcam")
    lines = out.splitlines()
    assert code == 0
    i = next(k for k, line in enumerate(lines) if line.startswith("uc_merced "))
    assert "800 train / 200 val / 1100 test" in lines[i + 1]
    i = next(k for k, line in enumerate(lines) if line.startswith("vtab1k/pcam "))
    assert "train800 of train, val200 of val, full test" in lines[i + 1]


def test_folder_task_is_listed_with_its_sizes(capsys, image_folder):
    code, out, _ = run(capsys, f"folder:{image_folder}", "--format", "json")
    (row,) = json.loads(out)
    assert code == 0 and row["found"] is True and row["num_classes"] == 3
    assert row["splits"] == {"all": 30}


def test_folder_task_that_is_a_file_is_a_one_line_error(capsys, tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    code, _, err = run(capsys, f"folder:{tmp_path / 'a.png'}")
    assert code == 2 and "is a file" in err and len(err.strip().splitlines()) == 1


def test_missing_data_root_is_flagged_in_the_header(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERPROBE_DATA", str(tmp_path / "typo"))
    code, out, _ = run(capsys, "vtab1k/svhn")
    assert code == 0 and "not an existing folder" in out.splitlines()[0]


def test_data_root_given_that_does_not_exist_is_exit_2(capsys, tmp_path):
    code, out, err = run(capsys, "--data-root", str(tmp_path / "typo"), "vtab1k/svhn")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert f"--data-root {tmp_path / 'typo'} is not an existing folder" in err


def test_folder_task_without_a_path_is_an_error_not_the_current_folder(capsys):
    code, _, err = run(capsys, "folder:")
    assert code == 2 and "folder: needs a path" in err
