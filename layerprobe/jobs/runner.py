"""``run``: plan a job, skip what is done, run the rest on the chosen executor, report.

Before any unit runs: every stage config is built (bad values fail with file, key, line),
model names and checkpoints are checked, the probe backend is checked, the results folder
is claimed for this job, and the job lock is taken.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from layerprobe.errors import UserError
from layerprobe.jobs.configs import check_job, check_models, pretrain_api
from layerprobe.jobs.graph import Graph
from layerprobe.jobs.jobfile import Job, load_job
from layerprobe.jobs.state import JobLock, State
from layerprobe.jobs.units import Plan, make_plan
from layerprobe.jobs.verify import check_units
from layerprobe.jobs.work import Outcome, Work
from layerprobe.progress import say
from layerprobe.runtime.atomic import write_json_atomic

MARKER = ".layerprobe-job.json"  # in the results folder: the jobs that write there


class ResultsOwned(UserError):
    """The results folder belongs to another job."""


@dataclass
class RunReport:
    """What a run did.

    Attributes
    ----------
    plan : the job's units.
    counts : per stage, the units ``total``, ``done_before``, ``ran``, ``done``, ``failed``,
        ``blocked``.
    failures : the outcome of every failed unit.
    blocked : indices into ``plan.units`` of the units whose dependencies failed.
    rerun : unit index -> why a unit done before runs again.
    """

    plan: Plan
    counts: dict[str, dict[str, int]]
    failures: list[Outcome] = field(default_factory=list)
    blocked: list[int] = field(default_factory=list)
    rerun: dict[int, str] = field(default_factory=dict)  # unit index -> why it runs again

    @property
    def ok(self) -> bool:
        return not self.failures and not self.blocked

    @property
    def ran(self) -> int:
        return sum(c["ran"] for c in self.counts.values())


def prepare(job: Job | str | Path) -> tuple[Job, Plan]:
    """Load (if a path), plan and check a job; nothing runs and no model is built."""
    job = job if isinstance(job, Job) else load_job(job)
    plan = make_plan(job)
    check_job(job, plan.points())
    return job, plan


def run_job(
    job: Job | str | Path,
    *,
    executor: str | None = None,
    workers: int | None = None,
    retries: int | None = None,
    slurm: dict | None = None,
    force: bool = False,
    quiet: bool = False,
    in_process: bool = False,
) -> RunReport:
    """Run every unit of a job that is not done yet.

    Parameters
    ----------
    job : a job file path or a loaded :class:`~layerprobe.jobs.jobfile.Job`.
    executor, workers, retries : override ``[run]`` (``local`` | ``slurm``; default local, 1
        worker, 0 retries).
    slurm : keys of ``[slurm]`` to override (partition, gpus, time ...).
    force : write into a results folder that another job (or no job) wrote.
    quiet : no progress bar; failures are still reported.
    in_process : run the units in this process, one after another, instead of in supervised
        worker processes (for a debugger: breakpoints in a model factory work; a crash in
        native code then ends the run, and no unit is recorded for it). Local executor only.

    Returns
    -------
    RunReport : per stage counts, the failed units (with log paths) and the blocked ones;
        ``ok`` is False when a unit failed or was blocked.
    """
    job, plan = prepare(job)
    executor = executor or job.run.executor
    workers = workers or job.run.workers
    retries = job.run.retries if retries is None else retries
    settings = job.slurm.updated(slurm)
    counts = plan.counts()
    if counts["pretrain"] or counts["finetune"]:
        pretrain_api()
    if executor == "slurm":
        from layerprobe.jobs.slurm import submitit_module

        submitit_module()
    _check_probe_backend(job)
    claim_results(job, force)
    with JobLock(job.dir, job.name):
        state = State(job.dir)
        state.clear_running()
        check = check_units(plan, state)
        done = check.done
        check_models(
            job,
            {
                plan.models[u.model].index
                for u, d in zip(plan.units, done, strict=True)
                if not d and plan.models[u.model].table is not None
            },
        )
        graph = Graph(plan, done)
        report = RunReport(
            plan,
            {
                s: {"total": n, "done_before": 0, "ran": 0, "done": 0, "failed": 0, "blocked": 0}
                for s, n in counts.items()
            },
        )
        for i, unit in enumerate(plan.units):
            report.counts[unit.stage]["done_before"] += done[i]
        report.rerun = check.reasons
        for line in check.lines(plan):
            print(f"layerprobe: running again: {line}", file=sys.stderr)
        progress = _Progress(plan, report.counts, graph.todo, quiet, state)

        def on_outcome(i: int, outcome: Outcome) -> None:
            row = report.counts[outcome.stage]
            row["ran"] += 1
            row["done" if outcome.ok else "failed"] += 1
            if not outcome.ok:
                report.failures.append(outcome)
                progress.say(
                    f"failed: {outcome.stage} {outcome.id}: {outcome.error} (log: {outcome.log})"
                )
            progress.update(outcome)

        def on_blocked(blocked: list[int]) -> None:
            for j in blocked:
                report.counts[plan.units[j].stage]["blocked"] += 1
            report.blocked += blocked

        def make_work(i: int) -> Work:
            unit = plan.units[i]
            deps = tuple((plan.units[d].stage, plan.units[d].id) for d in unit.deps)
            return Work(unit, plan.models[unit.model], deps, redo=i in check.reasons)

        try:
            if executor == "slurm":
                from layerprobe.jobs.slurm import run_slurm

                run_slurm(
                    graph,
                    make_work,
                    job,
                    settings=settings,
                    retries=retries,
                    on_outcome=on_outcome,
                    on_blocked=on_blocked,
                )
            else:
                from layerprobe.jobs.local import run_local

                run_local(
                    graph,
                    make_work,
                    job,
                    workers=workers,
                    retries=retries,
                    on_outcome=on_outcome,
                    on_blocked=on_blocked,
                    in_process=in_process,
                    on_tick=progress.tick,
                )
        finally:
            progress.close()
        check_units(plan, state)  # the new records into the index, for the next status
    return report


def claim_results(job: Job, force: bool) -> None:
    """Record this job in its results folder; refuse a folder another job (or no job) wrote,
    unless ``force``."""
    from layerprobe.results.parts import check_results_dir, part_files

    root = check_results_dir(job.results)
    marker = root / MARKER
    try:
        jobs = json.loads(marker.read_text()).get("jobs", [])
    except FileNotFoundError:
        jobs = []
    except (OSError, json.JSONDecodeError, AttributeError):
        jobs = ["(unreadable marker)"]
    if job.name in jobs:
        return
    if not force:
        if jobs:
            raise ResultsOwned(
                f"results folder {root} belongs to job {jobs[0]!r}, not {job.name!r}; give this "
                "job its own folder ([job] results = ...), or pass --force to add to it"
            )
        if part_files(root):
            raise ResultsOwned(
                f"results folder {root} already holds results not written by a job; give this "
                "job its own folder ([job] results = ...), or pass --force to add to it"
            )
    write_json_atomic(marker, {"jobs": [*jobs, job.name]})


def _check_probe_backend(job: Job) -> None:
    from layerprobe.jobs.configs import probe_configs
    from layerprobe.probe.backends import check_backend

    config = probe_configs(job)[0]  # the families share backend, device and precision
    check_backend(config.backend, config.device, config.precision)


class _Progress:
    """Where the run is in its plan: first what is done already (reused), then after each unit
    which unit of how many it was and of which stage, with the time left. A tqdm bar on a
    terminal; elsewhere a line per unit at most every ``progress.INTERVAL`` seconds (and the
    first and last); failures always print."""

    def __init__(
        self, plan: Plan, counts: dict[str, dict[str, int]], todo: int, quiet: bool, state: State
    ):
        from layerprobe.progress import Progress

        self.counts, self.quiet, self.state = counts, quiet, state
        self.heard = time.monotonic()  # when the run last printed where it is
        self.started: dict[str, float] = {}  # unit id -> when a tick first saw it running
        total = sum(c["total"] for c in counts.values())
        done = {s: c["done_before"] for s, c in counts.items() if c["total"]}
        before = sum(done.values())
        if not quiet:
            per_stage = ", ".join(f"{s} {done[s]}/{counts[s]['total']}" for s in done)
            if todo == 0:
                say(
                    f"job {plan.job.name}: all {total} unit(s) done already ({per_stage}); "
                    "reusing them, nothing to run"
                )
            elif before:
                say(
                    f"job {plan.job.name}: {before} of {total} unit(s) done already "
                    f"({per_stage}), reused; running the other {todo}"
                )
            else:
                say(f"job {plan.job.name}: running {todo} unit(s) ({per_stage})")
        self.bar = Progress(
            todo, desc=f"run {plan.job.name}", unit="unit", quiet=quiet, first=True, last=True
        )

    def tick(self, running: list[Work]) -> None:
        """Every ``progress.INTERVAL`` seconds without a line: the last line of each running
        unit's log (a pre-training unit logs its epochs and steps, with the time left)."""
        from layerprobe import progress

        now = time.monotonic()
        if self.quiet or now - max(self.heard, self.bar.shown) < progress.INTERVAL:
            return
        self.heard = now
        for work in running:
            since = self.started.setdefault(work.unit.id, now)
            last = _last_line(self.state.log_path(work.unit.stage, work.unit.id))
            where = f"{work.unit.stage} {work.unit.id} (for {progress.duration(now - since)})"
            self.bar.write(f"running {where}" + (f": {last}" if last else ""))

    def update(self, outcome: Outcome) -> None:
        self.heard = time.monotonic()
        row = self.counts[outcome.stage]
        status = "done" if outcome.ok else "failed"
        self.bar.update(
            note=f"{outcome.stage} {outcome.id} {status} ({outcome.stage} "
            f"{row['done'] + row['done_before']}/{row['total']} complete)"
        )

    def say(self, message: str) -> None:
        """A message that prints even when quiet (a failure), above the bar if there is one."""
        if self.bar.bar is not None:
            self.bar.bar.write(f"layerprobe: {message}", file=sys.stderr)
        else:
            say(message)

    def close(self) -> None:
        self.bar.close()


def _last_line(path: Path, tail: int = 4096) -> str:
    """The last line a unit logged, without its ``layerprobe:`` prefix ("" if none yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - tail))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    found = [
        line.strip()
        for line in text.replace("\r", "\n").splitlines()
        if line.strip() and not line.startswith("== ")  # not the header of an attempt
    ]
    return found[-1].removeprefix("layerprobe: ") if found else ""
