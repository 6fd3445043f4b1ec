"""Layer similarity (debiased linear CKA): known answers, a plain numpy reference, the CLI on
real cache files, and the bad inputs."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from layerprobe.analysis.similarity import COLUMNS, cka_maps, layer_similarity, linear_cka
from layerprobe.cli import main
from layerprobe.errors import ConfigError
from layerprobe.extract.cache import cache_path, read_arrays
from tests.cachefiles import write_cache_file, write_task
from tests.limits import HANG


def numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The estimator as written in docs/similarity.md (Song et al. 2012), in plain numpy on uncentred features."""
    n = len(x)

    def gram(a):
        k = a.astype(np.float64) @ a.astype(np.float64).T
        np.fill_diagonal(k, 0.0)
        return k

    def hsic(k, l):  # noqa: E741
        return (
            np.sum(k * l)
            + k.sum() * l.sum() / ((n - 1) * (n - 2))
            - 2.0 * (k.sum(0) @ l.sum(1)) / (n - 2)
        ) / (n * (n - 3))

    k, l = gram(x), gram(y)  # noqa: E741
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def numpy_biased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The plain (biased) estimator, to show what the debiased one removes."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


# -- known answers --------------------------------------------------------------------------


def test_identical_layers_give_one():
    x = np.random.default_rng(0).normal(size=(200, 30)) * 3.0 + 5.0
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_independent_layers_give_near_zero_where_the_biased_estimator_does_not():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1000, 256)), rng.normal(size=(1000, 512))
    assert abs(linear_cka(x, y)) < 0.05
    assert numpy_biased_cka(x, y) > 0.2  # wide layers, few images: the plain estimator inflates


def test_invariant_to_orthogonal_maps_and_isotropic_scaling_not_to_any_linear_map():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 20)) * np.linspace(0.2, 3.0, 20)  # anisotropic
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, 0.01 * (x @ q) + 4.0) == pytest.approx(1.0, abs=1e-10)  # + translation
    a = rng.normal(size=(20, 20))
    assert np.linalg.matrix_rank(a) == 20
    assert linear_cka(x, x @ a) < 0.9


@pytest.mark.parametrize("block_bytes", [64 * 2**20, 20_000, 600_000])
def test_maps_agree_with_numpy_reference(block_bytes):
    """Every block size (one block; tiny blocks with centred copies kept; blocks too small to
    keep the centred copies, so they are made per block) gives the reference's values."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(150, 8))
    feats = [
        (base @ rng.normal(size=(8, d)) + noise * rng.normal(size=(150, d)) + 1.0).astype(dtype)
        for d, noise, dtype in [(5, 0.1, np.float16), (40, 1.0, np.float32), (12, 3.0, np.float64)]
    ]
    maps = cka_maps(feats, [[0, 1, 2], [2, 0]], block_bytes=block_bytes)
    for group, got in zip([[0, 1, 2], [2, 0]], maps, strict=True):
        want = np.array([[numpy_cka(feats[a], feats[b]) for b in group] for a in group])
        np.testing.assert_allclose(got, want, atol=1e-10)
    assert 0.2 < maps[0][0, 1] < 0.99  # a map with something in it


def test_constant_layer_is_nan_not_an_error():
    rng = np.random.default_rng(4)
    got = cka_maps([rng.normal(size=(50, 4)), np.ones((50, 3))], [[0, 1]])[0]
    assert got[0, 0] == 1.0 and np.isnan(got[0, 1]) and np.isnan(got[1, 1])


# -- from the cache ------------------------------------------------------------------------


def _two_checkpoints(root, n=40, shuffle_b=True):
    """Checkpoints a and b: b's layer h is a's h rotated and scaled, its rows in another order
    (its index says so); a's layer 'noise' is independent of everything."""
    rng = np.random.default_rng(5)
    h = rng.normal(size=(n, 6)) * np.linspace(0.5, 2.0, 6)
    feats_a = {"h": h, "h2": h @ rng.normal(size=(6, 6)), "noise": rng.normal(size=(n, 9))}
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    order = rng.permutation(n) if shuffle_b else np.arange(n)
    feats_b = {"h": 3.0 * (h @ q)[order], "h2": feats_a["h2"][order] + 0.5, "last": h[order]}
    labels = np.zeros(n, dtype=np.int64)
    for key, feats, index in [("a-1", feats_a, np.arange(n)), ("b-2", feats_b, order)]:
        write_cache_file(
            cache_path(root, key, "toy", split="test"),
            feats,
            labels,
            model_key=key,
            task="toy",
            split="test",
            dtype="float32",
            index=index,
        )
    return feats_a, feats_b


def test_layer_similarity_table(tmp_path):
    _two_checkpoints(tmp_path / "cache")
    # as stored
    feats_a = read_arrays(cache_path(tmp_path / "cache", "a-1", "toy", split="test"))[2]
    table = layer_similarity(tmp_path / "cache")
    assert list(table.columns) == COLUMNS
    assert set(table["n_rows"]) == {40} and set(table["split"]) == {"test"}
    within = table[table["model_key"] == table["model_key_b"]]
    assert len(within) == 9 + 9  # every ordered pair of each checkpoint's 3 layers
    a = within[within["model_key"] == "a-1"].set_index(["layer_a", "layer_b"])["cka"]
    assert a["h", "h"] == pytest.approx(1.0)
    assert a["h", "h2"] == pytest.approx(numpy_cka(feats_a["h"], feats_a["h2"]), abs=1e-9)
    assert a["h", "h2"] == pytest.approx(a["h2", "h"], abs=1e-12)
    depths = within.set_index(["model_key", "layer_a"])["depth_a"]
    assert depths["a-1", "noise"].iloc[0] == 1.0 and depths["a-1", "h"].iloc[0] == 0.0
    # Across: the layers both hold, once; rows matched by index although b's are shuffled.
    across = table[table["model_key"] != table["model_key_b"]].set_index("layer_a")
    assert sorted(across.index) == ["h", "h2"]
    assert (across["layer_b"] == across.index).all() and set(across["model_key"]) == {"a-1"}
    assert across.loc["h", "cka"] == pytest.approx(1.0, abs=1e-9)  # rotated and scaled
    assert across.loc["h2", "cka"] == pytest.approx(1.0, abs=1e-9)  # translated


def test_rows_subsample_is_the_same_images_in_every_checkpoint(tmp_path):
    _two_checkpoints(tmp_path / "cache")
    table = layer_similarity(tmp_path / "cache", rows=25, seed=3)
    assert set(table["n_rows"]) == {25}
    across = table[table["model_key"] != table["model_key_b"]].set_index("layer_a")["cka"]
    assert across["h"] == pytest.approx(1.0, abs=1e-9)  # same 25 images on both sides
    other = layer_similarity(tmp_path / "cache", rows=25, seed=4)
    assert not np.allclose(table["cka"], other["cka"])  # another subsample
    again = layer_similarity(tmp_path / "cache", rows=25, seed=3)
    pd.testing.assert_frame_equal(table, again)


def test_layer_similarity_takes_the_names_and_defaults_of_the_command(tmp_path, capsys):
    from layerprobe.analysis.config import SimilarityConfig

    _two_checkpoints(tmp_path / "cache")
    table = layer_similarity(tmp_path / "cache", task=["toy"], model=["a-1", "b-2"], within=True)
    assert (table["model_key"] == table["model_key_b"]).all()  # --within: no CKA across
    config = SimilarityConfig(cache=tmp_path / "cache", within=True)
    pd.testing.assert_frame_equal(layer_similarity(config), table)
    pd.testing.assert_frame_equal(
        layer_similarity(config, within=False), layer_similarity(config.cache)
    )
    assert (
        main(["similarity", "--cache", str(tmp_path / "cache"), "--within", "--format", "csv"]) == 0
    )
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(printed) == len(table) and set(printed["model_key_b"]) == {"a-1", "b-2"}
    with pytest.raises(TypeError, match="across"):
        layer_similarity(tmp_path / "cache", across=False)


def test_cache_reader_reads_chosen_rows_in_order(tmp_path):
    path = write_task(tmp_path / "cache", rows={"test": 20})["test"]
    _, index, full = read_arrays(path)
    rows = np.array([17, 2, 40, 5]) % 60
    _, got_index, got = read_arrays(path, ["blocks.1"], rows=rows)
    np.testing.assert_array_equal(got_index, index[rows])
    np.testing.assert_array_equal(got["blocks.1"], full["blocks.1"][rows])


# -- the command -------------------------------------------------------------------------------


def _cli(capsys, *args):
    code = main(["similarity", *map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_formats_and_parquet(tmp_path, capsys):
    _two_checkpoints(tmp_path / "cache")
    feats_a = read_arrays(cache_path(tmp_path / "cache", "a-1", "toy", split="test"))[2]
    code, out, err = _cli(capsys, "--cache", tmp_path / "cache")
    assert code == 0, err
    written = pd.read_parquet(tmp_path / "analysis" / "similarity.parquet")
    assert list(written.columns) == COLUMNS and len(written) == 20
    assert "a-1 · toy (test, 40 images)" in out and "across checkpoints" in out
    lines = out.splitlines()
    head = lines.index("a-1 · toy (test, 40 images): linear CKA (debiased)")
    assert lines[head + 2].split() == ["h", "h2", "noise"]  # depth order
    assert lines[head + 3].split()[:2] == ["h", "1.00"]
    assert "CKA on 40 images, 2 checkpoint(s)" in err and "wrote" in err
    assert not [p for p in (tmp_path / "analysis").iterdir() if p.name != "similarity.parquet"]

    code, out, _ = _cli(
        capsys,
        "--cache",
        tmp_path / "cache",
        "--format",
        "csv",
        "--model",
        "a-1",
        "--out",
        tmp_path / "o",
    )
    assert code == 0
    csv = pd.read_csv(io.StringIO(out))
    assert list(csv.columns) == COLUMNS and set(csv["model_key"]) == {"a-1"} and len(csv) == 9
    got = csv.set_index(["layer_a", "layer_b"])["cka"]
    assert got["h", "h2"] == pytest.approx(numpy_cka(feats_a["h"], feats_a["h2"]), abs=1e-6)

    code, out, _ = _cli(
        capsys,
        "--cache",
        tmp_path / "cache",
        "--format",
        "json",
        "--task",
        "toy",
        "--out",
        tmp_path / "o",
        "--rows",
        30,
    )
    assert code == 0
    records = json.loads(out)
    assert len(records) == 20 and {r["n_rows"] for r in records} == {30}
    assert set(records[0]) == set(COLUMNS)


def test_cli_bad_inputs_one_line_exit_2(tmp_path, capsys):
    _two_checkpoints(tmp_path / "cache")
    for args, words in [
        (["--task", "toyy"], "no cache of task 'toyy'"),
        (["--model", "c-3"], "no cache of model 'c-3'"),
        (["--split", "val"], "no 'val' split"),
        (["--rows", "3"], "at least 4 images"),
    ]:
        code, out, err = _cli(capsys, "--cache", tmp_path / "cache", *args)
        assert code == 2 and out == "", args
        assert err.count("\n") == 1 and words in err and "Traceback" not in err

    one = tmp_path / "one"
    labels = np.zeros(10, dtype=np.int64)
    write_cache_file(
        cache_path(one, "k", "t", split="test"),
        {"pre_logits": np.eye(10)},
        labels,
        model_key="k",
        task="t",
        split="test",
    )
    code, _, err = _cli(capsys, "--cache", one)
    assert code == 2 and "holds one layer (pre_logits)" in err and err.count("\n") == 1

    other = tmp_path / "other"
    rng = np.random.default_rng(0)
    for key, index in [("a", np.arange(10)), ("b", np.arange(5, 15))]:
        write_cache_file(
            cache_path(other, key, "t", split="test"),
            {"x": rng.normal(size=(10, 3)), "y": rng.normal(size=(10, 3))},
            labels,
            model_key=key,
            task="t",
            split="test",
            index=index,
        )
    code, _, err = _cli(capsys, "--cache", other)
    assert code == 2 and "hold different images (10 and 10 rows, 5 in common)" in err
    assert err.count("\n") == 1
    code, out, err = _cli(capsys, "--cache", other, "--within")  # each checkpoint alone is fine
    assert code == 0 and "a · t" in out and "b · t" in out and "across" not in out


def test_cli_from_the_shell_no_traceback(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "layerprobe", "similarity", "--cache", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "does not exist" in run.stderr


# -- the report ------------------------------------------------------------------------------


def test_report_shows_cka_when_similarity_was_run(tmp_path, capsys):
    from layerprobe.analysis import write_report
    from layerprobe.analysis.similarity_plots import cka_to_last, similarity_figures
    from tests.results_data import probe_rows, write_store

    root = tmp_path / "run"
    _two_checkpoints(root / "cache")
    rows = []
    for key in ("a-1", "b-2"):
        for layer, depth, acc in [("h", 0.0, 0.6), ("h2", 0.5, 0.7), ("noise", 1.0, 0.5)]:
            rows += probe_rows(
                acc, model_key=key, task="toy", layer=layer, depth=depth, upstream_accuracy=None
            )
    write_store(rows, root / "results")
    assert similarity_figures(root / "results", root / "report") is None  # nothing to show yet

    assert _cli(capsys, "--cache", root / "cache")[0] == 0  # writes root/analysis
    page = write_report(root / "results", root / "report", bootstrap=0).read_text()
    section = page[page.index("<h2>Layer similarity (CKA)</h2>") :]
    assert "similarity.parquet" in section and section.count("<img") == 2  # to-last, one map
    assert "cka-to-last" in section and "cka-toy" in section
    plots = root / "report" / "plots"
    assert (plots / "cka-toy.png").stat().st_size > 1000 and (plots / "cka-to-last.png").exists()
    last = cka_to_last(pd.read_parquet(root / "analysis" / "similarity.parquet"))
    a = last[last["model_key"] == "a-1"].set_index("layer")["cka_to_last"]
    assert list(a.index) == ["h", "h2", "noise"] and a["noise"] == 1.0 and abs(a["h"]) < 0.5


def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _two_checkpoints(tmp_path / "cache")
    code, out, err = _cli(capsys, "--cache", tmp_path / "cache", "--device", "cuda")
    assert code == 2 and out == "" and err.count("\n") == 1 and "no CUDA GPU here" in err


@pytest.mark.parametrize("block_bytes", [64 * 2**20, 30_000])
def test_float16_features_float32_tiles_agree_with_float64(block_bytes):
    """float16 features (the cache's default) take float32 tiles: several tiles per side (300
    rows; 128 and, with the small block, 16 rows a tile), two widths, centred copies kept or
    not; every value within 1e-6 of the float64 arithmetic and of the numpy reference."""
    rng = np.random.default_rng(6)
    base = rng.normal(size=(300, 6))
    feats = [
        (base @ rng.normal(size=(6, d)) + noise * rng.normal(size=(300, d)) + 3.0).astype(
            np.float16
        )
        for d, noise in [(24, 0.3), (9, 1.0), (24, 2.0), (9, 0.1), (24, 5.0)]
    ]
    groups = [[0, 1, 2, 3, 4], [4, 2, 0]]
    fast = cka_maps(feats, groups, block_bytes=block_bytes)
    exact = cka_maps(feats, groups, block_bytes=block_bytes, precision="float64")
    for group, got, want64 in zip(groups, fast, exact, strict=True):
        want = np.array([[numpy_cka(feats[a], feats[b]) for b in group] for a in group])
        np.testing.assert_allclose(want64, want, atol=1e-10)
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert not np.array_equal(got, want64)  # the float32 tiles did run
    assert 0.1 < fast[0][0, 2] < 0.99
    with pytest.raises(ConfigError, match="precision"):
        cka_maps(feats, groups, precision="half")
