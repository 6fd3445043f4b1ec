"""The floor-1 runtime: devices, thread pools, atomic writes, ids and warnings."""

from __future__ import annotations

import json
import threading
import warnings

import pandas as pd
import pytest
import torch

from layerprobe.cli import main
from layerprobe.errors import ConfigError, EnvironmentProblem
from layerprobe.jobs.units import run_name
from layerprobe.results.parts import config_hash, identity_hash, part_path, readable
from layerprobe.results.store import read
from layerprobe.runtime.atomic import atomic_path, write_json_atomic, write_text_atomic
from layerprobe.runtime.devices import resolve_device
from layerprobe.runtime.ids import short_hash, slug
from layerprobe.runtime.pools import single_threaded_pool
from layerprobe.runtime.warn import LayerprobeWarning
from tests.results_data import probe_rows, write_store

# -- atomic writes ---------------------------------------------------------------------------


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "out" / "table.json", "old")  # the folder is made
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_path(path) as tmp:
            tmp.write_text("new, but only half")
            raise RuntimeError("half way")
    assert path.read_text() == "old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.json"]
    write_json_atomic(path, {"b": 1, "a": [1, 2]}, indent=2)
    assert json.loads(path.read_text()) == {"b": 1, "a": [1, 2]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.json"]


def test_a_real_writer_that_fails_leaves_the_old_fit_table(tmp_path):
    from layerprobe.analysis.fit import write_fits

    path = write_fits(pd.DataFrame({"task": ["a"], "e_ir": [0.1]}), tmp_path / "fits.parquet")
    bad = pd.DataFrame({"task": ["b"], "e_ir": [object()]})  # pyarrow cannot store this
    with pytest.raises(Exception, match="object"):
        write_fits(bad, path)
    assert pd.read_parquet(path)["task"].tolist() == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["fits.parquet"]


def test_threads_writing_one_file_never_share_a_temporary(tmp_path):
    path = tmp_path / "record.json"
    errors = []

    def write(i: int) -> None:
        try:
            for _ in range(20):
                write_json_atomic(path, {"writer": i}, fsync=False)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and json.loads(path.read_text())["writer"] in range(4)
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


# -- devices ---------------------------------------------------------------------------------


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu'; use one of auto, cpu, cuda"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match="unknown device 'mps'"):
        resolve_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_one_line_environment_problem():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(EnvironmentProblem) as err:
            resolve_device(name)
        assert "\n" not in str(err.value) and "no CUDA GPU here" in str(err.value)
        assert "use --device cpu" in str(err.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_past_the_gpus_is_one_line():
    n = torch.cuda.device_count()
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(EnvironmentProblem, match=f"torch sees {n} CUDA GPU"):
        resolve_device(f"cuda:{n}")


# -- thread pools ----------------------------------------------------------------------------


def test_single_threaded_pool_runs_one_thread_each_and_restores_the_count():
    before = torch.get_num_threads()
    with single_threaded_pool(2, name="lp-test") as pool:
        inside = list(pool.map(lambda _: torch.get_num_threads(), range(4)))
        names = set(pool.map(lambda _: threading.current_thread().name.split("_")[0], range(4)))
        assert torch.get_num_threads() == 1  # the caller too, while the pool is open
    assert inside == [1, 1, 1, 1] and names == {"lp-test"}
    assert torch.get_num_threads() == before


# -- ids: names on disk must never change ----------------------------------------------------

IDENTITY = {
    "model_key": "vit_tiny-0123456789ab",
    "task": "builtin/digits",
    "probe": "ridge",
    "caches": ["a.h5"],
    "shots": [1, 5],
}


def test_part_file_names_and_unit_ids_are_pinned():
    """Values written by the code before runtime/ids.py existed: existing stores and job
    folders must keep reading as done."""
    assert identity_hash(IDENTITY) == "7e10aad28e02c7a3"
    assert config_hash({"l2": "grid", "seeds": 3}) == "dba32ee047"
    assert readable("hf/some model") == "hf__some_model"
    assert str(part_path("res", IDENTITY)) == (
        "res/vit_tiny-0123456789ab/builtin__digits.ridge.7e10aad28e02c7a3.parquet"
    )
    assert short_hash({"model": "timm:vit_tiny", "epochs": 3}) == "ce8b1910"
    assert short_hash([{"x": 1}, "cache", None], 6) == "353694"
    assert slug("builtin/count") == "builtin__count"
    assert slug("  weird name:é/x..", 20) == "__weird_name____x"
    assert slug("...") == "_"
    point = {
        "model": "layerprobe:vit-s",
        "data_fraction": 0.1,
        "epochs": 7,
        "seed": 0,
        "head_wd": 1e-4,
    }
    axes = ["model", "data_fraction", "epochs", "seed"]
    assert run_name(point, axes) == "vit-s_df0.1_ep7_s0-016595aa"


# -- warnings --------------------------------------------------------------------------------


@pytest.fixture
def store_with_a_bad_part(tmp_path):
    store = write_store(probe_rows(0.5, model_key="m-1", task="toy"), tmp_path / "res")
    bad = store / "m-1" / "broken.ridge.0123456789abcdef.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    return store, bad


def test_a_warning_of_the_python_api_is_a_layerprobe_warning(store_with_a_bad_part):
    store, bad = store_with_a_bad_part
    with pytest.warns(LayerprobeWarning, match=f"skipping results part {bad}"):
        rows = read(store, skip_bad=True)
    assert set(rows["model_key"]) == {"m-1"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", LayerprobeWarning)  # filterable like any warning
        read(store, skip_bad=True)
    assert caught == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerprobeWarning)
        with pytest.raises(LayerprobeWarning):
            read(store, skip_bad=True)


def test_the_cli_prints_a_warning_as_one_line(store_with_a_bad_part, capsys):
    store, bad = store_with_a_bad_part
    for _ in range(2):  # every command says it again, however often it runs in one process
        capsys.readouterr()
        assert main(["results", "show", "--results", str(store), "--skip-bad"]) == 0
        err = capsys.readouterr().err
        said = [line for line in err.splitlines() if "skipping" in line]
        assert len(said) == 1, err
        assert said[0].startswith(f"layerprobe: warning: skipping results part {bad}: ")
        assert "LayerprobeWarning" not in err and "Traceback" not in err
    assert warnings.showwarning is not None and "one_line" not in warnings.showwarning.__name__


# -- Arrow's memory pool for bulk reads --------------------------------------------------------

# A process that asks for the pool the store-reading commands use, with jemalloc printing its
# options at exit: ``stats_print`` is added to the options the function sets (or the user's).
_POOL_PROGRAM = """
import os, sys
import layerprobe.runtime.memory as memory
memory.RETURN_AT_ONCE += ",stats_print:true"
print(memory.return_freed_memory(), file=sys.stderr)
print("left:", os.environ.get(memory.JEMALLOC_CONF), file=sys.stderr)
import pyarrow as pa
print("pool:", pa.default_memory_pool().backend_name, file=sys.stderr)
"""


def _needs_jemalloc() -> None:
    import pyarrow as pa

    try:
        pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):
        pytest.skip("this pyarrow is built without jemalloc")


def _pool_process(env_extra: dict[str, str]) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JE_ARROW_MALLOC_CONF"} | env_extra
    done = subprocess.run(
        [sys.executable, "-c", _POOL_PROGRAM], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_bulk_read_pool_returns_freed_pages_at_once_from_its_start():
    # Arrow builds jemalloc with a decay of 1 s; set after Arrow has loaded, a decay of 0 reaches
    # only arenas made later, so the variable must be there when Arrow loads — and then gone.
    _needs_jemalloc()
    err = _pool_process({})
    assert "opt.dirty_decay_ms: 0" in err and "opt.muzzy_decay_ms: 0" in err
    assert "left: None" in err and "pool: jemalloc" in err


def test_the_bulk_read_pool_keeps_a_users_own_jemalloc_options():
    _needs_jemalloc()
    err = _pool_process({"JE_ARROW_MALLOC_CONF": "dirty_decay_ms:250,stats_print:true"})
    assert "opt.dirty_decay_ms: 250" in err
    assert "left: dirty_decay_ms:250,stats_print:true" in err
