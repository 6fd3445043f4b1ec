"""The Slurm executor, through submitit: the ready units, wave after wave, as job arrays.

Each wave submits every unit whose dependencies have succeeded (stage after stage: the
pre-training runs, then extraction of their checkpoints, then probes ...) as one array;
small units are bundled (``bundle`` per array task) so that an array task does not spend
longer starting Python than working. Array tasks write the same records and unit logs as
local workers; this process waits for each wave, then submits the next. ``cluster =
"local"`` runs the same code path with submitit's local executor (no Slurm needed).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from layerprobe.errors import EnvironmentProblem, first_line
from layerprobe.jobs.graph import Graph
from layerprobe.jobs.jobfile import Job, SlurmSettings
from layerprobe.jobs.state import State
from layerprobe.jobs.work import Outcome, Work, run_bundle

DEFAULT_BUNDLE = 100  # extract / probe units per array task
DEFAULT_MINUTES = 240
ALONE = ("pretrain", "finetune")  # long units: one per array task


def submitit_module():
    try:
        import submitit
    except ImportError:
        raise EnvironmentProblem(
            "executor slurm needs the submitit package: pip install submitit"
        ) from None
    return submitit


def executor(job: Job, settings: SlurmSettings):
    """A submitit executor for ``settings`` (the ``[slurm]`` table with flags applied)."""
    submitit = submitit_module()
    cluster = settings.cluster
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise EnvironmentProblem(
            "executor slurm: no Slurm on this machine (sbatch not found); run on a login node, "
            'or set cluster = "local" in [slurm] to try the job with submitit\'s local executor'
        )
    ex = submitit.AutoExecutor(folder=job.dir / "slurm" / "%j", cluster=cluster)
    params = {
        "name": f"layerprobe-{job.name}",
        "timeout_min": DEFAULT_MINUTES if settings.time is None else settings.time,
        "gpus_per_node": settings.gpus,
        "cpus_per_task": settings.cpus,
        "mem_gb": settings.mem_gb,
        "slurm_partition": settings.partition,
        "slurm_account": settings.account,
        "slurm_qos": settings.qos,
        "slurm_constraint": settings.constraint,
        "slurm_array_parallelism": settings.array_parallelism,
        "slurm_setup": settings.setup,
        "slurm_additional_parameters": settings.extra,
    }
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def run_slurm(
    graph: Graph,
    make_work: Callable[[int], Work],
    job: Job,
    *,
    settings: SlurmSettings,
    retries: int,
    on_outcome: Callable[[int, Outcome], None],
    on_blocked: Callable[[list[int]], None],
) -> None:
    """Submit the ready units wave by wave and wait for each wave."""
    ex = executor(job, settings)
    size = DEFAULT_BUNDLE if settings.bundle is None else settings.bundle
    while ready := graph.pop_all():
        works = {i: make_work(i) for i in ready}
        groups = _bundle(ready, works, size)
        jobs = ex.map_array(
            run_bundle,
            [[works[i] for i in g] for g in groups],
            [job] * len(groups),
            [retries] * len(groups),
        )
        for slurm_job, group in zip(jobs, groups, strict=True):
            outcomes = _results(slurm_job, [works[i] for i in group], job)
            for i, outcome in zip(group, outcomes, strict=True):
                on_outcome(i, outcome)
                on_blocked(graph.finish(i, outcome.ok))


def _bundle(ready: list[int], works: dict[int, Work], size: int) -> list[list[int]]:
    out: list[list[int]] = []
    for i in ready:
        stage = works[i].unit.stage
        if (
            out
            and works[out[-1][0]].unit.stage == stage
            and stage not in ALONE
            and len(out[-1]) < size
        ):
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _results(slurm_job, works: list[Work], job: Job) -> list[Outcome]:
    """The bundle's outcomes; if the array task itself failed (time limit, killed, out of
    memory), its units without a done record are reported failed with the task's log."""
    try:
        return slurm_job.result()
    except Exception as err:  # noqa: BLE001 - submitit raises several types
        state = State(job.dir)
        log = str(slurm_job.paths.stderr)
        error = f"Slurm task {slurm_job.job_id} failed: {first_line(err)}"
        out = []
        for work in works:
            unit = work.unit
            if state.read("done", unit.stage, unit.id) is not None:
                out.append(Outcome(unit.stage, unit.id, True, log=log))
                continue
            state.failed(unit.stage, unit.id, {"error": error, "log": log, "attempts": 1})
            out.append(Outcome(unit.stage, unit.id, False, error, log))
        return out
