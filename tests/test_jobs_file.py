"""Job files, plans, records, locks and errors: no model is run here."""

from __future__ import annotations

import pytest

from layerprobe.cli import main
from layerprobe.errors import EnvironmentProblem, UserError
from layerprobe.jobs import dry_run, job_status, load_job, make_plan
from layerprobe.jobs.graph import Graph
from layerprobe.jobs.jobfile import minutes
from layerprobe.jobs.lines import key_line
from layerprobe.jobs.runner import ResultsOwned, claim_results
from layerprobe.jobs.state import JobBusy, JobLock, State, lock_holder
from layerprobe.jobs.verify import VERSION, data_fingerprint
from tests.jobs_helpers import CONVNET, TASKS, VIT, job_text, write_job


@pytest.fixture
def job_file(tmp_path):
    return write_job(tmp_path / "tiny.toml", job_text("tiny", tmp_path))


def test_plan_counts(job_file, capsys):
    plan = make_plan(load_job(job_file))
    assert plan.counts() == {"pretrain": 0, "extract": 2 * 3 * 3, "probe": 2 * 3, "finetune": 0}
    assert len({u.id for u in plan.units}) == len(plan.units)
    for unit in plan.units:  # dependencies first
        assert all(d < plan.units.index(unit) for d in unit.deps)
    assert main(["run", str(job_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "extract" in out and " 18 " in out and " 6 " in out


def test_plan_pretrain_grid(tmp_path):
    grid = (
        '\n[pretrain]\nmodel = ["vit-ti32", "resnet-s32"]\ndata_fraction = [0.1, 0.5, 1.0]\n'
        'seed = [0, 1]\nepochs = 2\n\n[finetune]\nepochs = 1\ntasks = ["builtin/textures"]\n'
    )
    job = load_job(write_job(tmp_path / "s.toml", job_text("s", tmp_path, models=grid)))
    plan = make_plan(job)
    runs = 2 * 3 * 2
    assert plan.counts() == {
        "pretrain": runs,
        "extract": runs * 9,
        "probe": runs * 3,
        "finetune": runs,
    }
    run = next(
        m
        for m in plan.models.values()
        if m.point == {"model": "vit-ti32", "data_fraction": 0.5, "seed": 1, "epochs": 2}
    )
    assert run.id.startswith("vit-ti32_df0.5_s1-") and run.run_dir == job.dir / "runs" / run.id
    assert run.model_config().spec.endswith(f"{run.id}/checkpoint.pt")
    extract = next(u for u in plan.units if u.stage == "extract" and u.model == run.id)
    assert plan.units[extract.deps[0]].id == run.id  # extraction waits for the checkpoint


def test_ids_follow_settings(tmp_path):
    a = make_plan(load_job(write_job(tmp_path / "a.toml", job_text("a", tmp_path))))
    b = make_plan(
        load_job(
            write_job(
                tmp_path / "b.toml",
                job_text("a", tmp_path, extra="")
                .replace("seeds = 2", "seeds = 3")
                .replace("batch_size = 256", "batch_size = 64"),
            )
        )
    )
    ids = lambda plan, stage: {u.id for u in plan.units if u.stage == stage}  # noqa: E731
    assert ids(a, "extract") == ids(b, "extract")  # batch size changes speed, not outputs
    assert not ids(a, "probe") & ids(b, "probe")  # more seeds: new probe units


@pytest.mark.parametrize(
    "edit, at, words",
    [
        (
            ("batch_size = 256", "batch_siz = 256"),
            "batch_siz",
            ["[extract]", "Did you mean: batch_size"],
        ),
        (("seeds = 2", "seed = 2"), "seed =", ["[probe]", "Did you mean: seeds"]),
        (("[probe]", "[probes]"), "[probes]", ["Did you mean: probe"]),
        (("image_size = 32", "image_sise = 32"), "image_sise", ["[[models]] #2", "image_size"]),
        (("batch_size = 256", 'dtype = "float8"'), "dtype", ["[extract]", "float8"]),
        (("seeds = 2", 'seeds = "two"'), "seeds", ["[probe] seeds"]),
        (('"builtin/occlusion"', '"builtin/oclusion"'), "tasks", ["builtin/occlusion"]),
        (("batch_size = 256", 'cache_dir = "x"'), "cache_dir", ["[job]"]),
        (("seeds = 2", "seeds = 0"), "seeds", ["[probe] seeds", ">= 1, got 0"]),
        (("seeds = 2", "seeds = 1.5"), "seeds", ["[probe] seeds", "whole number"]),
        (("shots = [1, 5]", "shots = [-1]"), "shots", ["[probe] shots", ">= 0", "[-1]"]),
        (("shots = [1, 5]", "shots = []"), "shots", ["[probe] shots"]),
    ],
)
def test_bad_job_file_one_line(tmp_path, capsys, edit, at, words):
    """Each error is one line: FILE:LINE: what, where, a suggestion; exit status 2."""
    text = job_text("bad", tmp_path).replace(*edit)
    path = write_job(tmp_path / "bad.toml", text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.lstrip().startswith(at))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"layerprobe: error: {path}:{line}:"), err
    for word in words:
        assert word in err


@pytest.mark.parametrize(
    "text, words",
    [
        ("[job]\ntasks = ['builtin/textures']\n", ["no models"]),
        ("[job]\ntasks = []\n" + CONVNET, ["tasks must be a non-empty list"]),
        (
            "[job]\ntasks = ['builtin/textures']\n[pretrain]\nmodel = 'x'\nseed = []\n",
            [":5:", "empty grid"],
        ),
        ("[job]\ntasks = ['builtin/textures']\n[models]\nspec = 'x'\n", ["[[models]]"]),
        ("[job]\ntasks = ['builtin/textures'\n", ["not valid TOML"]),
        (
            "[job]\ntasks = ['builtin/textures']\n" + CONVNET + "[run]\nexecutor = 'slurmm'\n",
            [":8:", "Did you mean: slurm"],
        ),
        (
            "[job]\ntasks = ['builtin/textures']\n" + CONVNET + "[slurm]\ntime = 'soon'\n",
            [":8:", "time"],
        ),
        (
            "[job]\ntasks = ['builtin/textures']\n[[models]]\nspec = 'vit_tiny_patch16_22'\n",
            [":4:", "unknown timm model"],
        ),
        (
            "[job]\ntasks = ['builtin/textures']\n[pretrain]\nmodel = ['resnet-tiny32', 'vit-ti99']\n",
            [":4:", "[pretrain] model", "unknown model 'vit-ti99'"],
        ),
        (
            "[job]\ntasks = ['builtin/textures']\n[pretrain]\nmodel = 'resnet-tiny32'\n"
            "task = 'builtin/nope'\n",
            [":5:", "[pretrain] task", "unknown task"],
        ),
    ],
)
def test_more_bad_files(tmp_path, text, words):
    path = write_job(tmp_path / "bad.toml", text)
    with pytest.raises(UserError) as err:
        dry_run(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    for word in words:
        assert word in message


def test_key_line_tables():
    text = '[job]\nname = "a"\n[[models]]\nspec = "x"\n[[models]]\nspec = "y"\nlabel = "b"\n[probe]\nseeds = 1\n'
    assert key_line(text, "models", "spec", index=1) == 6
    assert key_line(text, "models", "label", index=1) == 7
    assert key_line(text, "models", "label", index=0) == 3  # not written there: the header
    assert key_line(text, "probe", "seeds") == 9
    assert key_line(text, "extract", "layers") is None


def test_minutes():
    assert [minutes(v) for v in (90, "90", "1:30", "1:30:00", "2-0", "1-2:30")] == [
        90,
        90,
        2,
        90,
        2880,
        1590,
    ]
    with pytest.raises(ValueError):
        minutes("soon")


def test_status_counts_records(job_file):
    job = load_job(job_file)
    plan = make_plan(job)
    state = State(job.dir)
    extract = [u for u in plan.units if u.stage == "extract"]
    for unit in extract[:4]:  # records as a worker writes them (no output files here)
        inputs = {"data": data_fingerprint(unit.task, unit.split)}
        state.succeeded(
            "extract", unit.id, {"verify": VERSION, "outputs": [], "stamps": [], "inputs": inputs}
        )
    state.succeeded("extract", extract[5].id, {"outputs": []})  # an older record: runs again
    state.failed("extract", extract[4].id, {"error": "boom", "log": "/x.log"})
    status = job_status(job_file)
    assert status.rerun == [f"extract {extract[5].id}: " + status.rerun[0].split(": ", 1)[1]]
    assert "older layerprobe" in status.rerun[0]
    assert status.counts["extract"] == {
        "total": 18,
        "done": 4,
        "running": 0,
        "failed": 1,
        "blocked": 0,
        "pending": 13,
    }
    assert status.counts["probe"]["blocked"] == 1 and status.counts["probe"]["pending"] == 5
    assert status.failures == [("extract", extract[4].id, status.failures[0][2])]
    assert status.failures[0][2]["log"] == "/x.log"


def test_graph_failure_blocks_only_dependents(job_file):
    plan = make_plan(load_job(job_file))
    graph = Graph(plan, [False] * len(plan.units))
    first = graph.pop()
    assert plan.units[first].stage == "extract"
    blocked = graph.finish(first, ok=False)
    assert [plan.units[i].stage for i in blocked] == ["probe"]
    assert graph.todo == 24 and len(graph.waiting) == 5


def test_lock_refuses_second_run(tmp_path):
    with JobLock(tmp_path, "j"):
        holder = lock_holder(tmp_path)
        assert holder and holder["pid"] > 0
        with pytest.raises(JobBusy, match=r"already running \(pid \d+ on .* since"):
            with JobLock(tmp_path, "j"):
                pass
    assert lock_holder(tmp_path) is None


def test_results_folder_of_another_job(tmp_path):
    a = load_job(write_job(tmp_path / "a.toml", job_text("a", tmp_path)))
    b = load_job(write_job(tmp_path / "b.toml", job_text("b", tmp_path)))
    b.results = a.results
    claim_results(a, force=False)
    claim_results(a, force=False)  # the same job again: fine
    with pytest.raises(ResultsOwned, match="belongs to job 'a', not 'b'.*--force"):
        claim_results(b, force=False)
    claim_results(b, force=True)
    claim_results(b, force=False)


def test_slurm_without_submitit(job_file, monkeypatch, capsys):
    import sys

    from layerprobe.jobs.slurm import submitit_module

    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(EnvironmentProblem, match="submitit"):
        submitit_module()
    assert main(["run", str(job_file), "--executor", "slurm"]) == 2
    assert "needs the submitit package" in capsys.readouterr().err


def test_pretrain_module_missing(tmp_path, capsys):
    from layerprobe.jobs.configs import has_pretrain_api

    if has_pretrain_api():
        pytest.skip("layerprobe.pretrain is installed")
    grid = '\n[pretrain]\nmodel = "vit-ti32"\nseed = [0, 1]\n'
    path = write_job(tmp_path / "s.toml", job_text("s", tmp_path, models=grid))
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "layerprobe.pretrain is not installed" in capsys.readouterr().out
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "layerprobe.pretrain" in err


def test_sweep_needs_a_grid(job_file, capsys):
    assert main(["sweep", str(job_file), "--dry-run"]) == 2
    assert "no [pretrain] grid" in capsys.readouterr().err


def test_tasks_patterns(tmp_path):
    job = load_job(write_job(tmp_path / "p.toml", job_text("p", tmp_path, tasks=["builtin/loc-*"])))
    assert job.tasks == ["builtin/loc-x", "builtin/loc-y"]
    assert set(TASKS) <= {
        t.name for t in __import__("layerprobe.tasks.registry", fromlist=["x"]).list_tasks()
    }
    assert VIT  # the helpers are importable


def test_extract_splits_in_the_job_file_plan_units_and_each_unit_extracts_its_own(tmp_path):
    from layerprobe.jobs.configs import extract_config

    text = job_text("tiny", tmp_path).replace(
        "[extract]\nbatch_size = 256\n", '[extract]\nbatch_size = 256\nsplits = ["train", "test"]\n'
    )
    job = load_job(write_job(tmp_path / "tiny.toml", text))
    assert make_plan(job).counts()["extract"] == 2 * 3 * 2  # models × tasks × the two splits
    assert extract_config(job, splits="test").splits == "test"  # before: a TypeError


def test_run_and_slurm_tables_load_as_typed_settings(tmp_path):
    from layerprobe.jobs.jobfile import RunSettings, SlurmSettings

    extra = (
        '\n[run]\nexecutor = "slurm"\nworkers = 3\n\n[slurm]\ncluster = "local"\n'
        'time = "1:30:00"\nsetup = ["module load cuda"]\n'
    )
    job = load_job(write_job(tmp_path / "t.toml", job_text("t", tmp_path, extra=extra)))
    assert job.run == RunSettings(executor="slurm", workers=3, retries=0)
    assert job.slurm == SlurmSettings(cluster="local", time=90, setup=["module load cuda"])
    flags = job.slurm.updated({"time": 20, "gpus": 1})  # flags given on the command line
    assert (flags.time, flags.gpus, flags.cluster, job.slurm.time) == (20, 1, "local", 90)
    plain = load_job(write_job(tmp_path / "p.toml", job_text("p", tmp_path)))
    assert plain.run == RunSettings() and plain.slurm == SlurmSettings()
