"""``status`` and ``--dry-run``: where a job stands, from its file and its records alone.

Neither builds a model: the plan comes from the job file, each stage's done / failed /
running records are one directory listing each, and whether a done record still counts is
:func:`layerprobe.jobs.verify.check_units`, the same check ``run`` makes (a stat per output;
a cache file is opened only when its stamp moved).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from layerprobe.jobs.jobfile import Job, load_job
from layerprobe.jobs.state import State, describe, lock_holder
from layerprobe.jobs.units import STAGES, Plan, make_plan
from layerprobe.jobs.verify import check_units

DONE, RUNNING, FAILED, BLOCKED, PENDING = range(5)  # indices into COLUMNS
COLUMNS = ("done", "running", "failed", "blocked", "pending")


@dataclass
class JobStatus:
    """Per stage: total units and how many are done, running, failed, blocked, pending.

    ``failures`` holds (stage, unit id, record with ``error`` and ``log``) of the first
    ``limit`` failed units; ``holder`` is the lock note of a run in progress (None: none);
    ``rerun`` the first ``limit`` units whose done record no longer counts, with why (a
    missing or changed output, a changed input), ``reruns`` how many there are.
    """

    job: Job
    counts: dict[str, dict[str, int]]
    holder: dict | None = None
    failures: list[tuple[str, str, dict]] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)
    reruns: int = 0

    @property
    def failed(self) -> int:
        return sum(c["failed"] for c in self.counts.values())


def job_status(job: Job | str, limit: int = 20, plan: Plan | None = None) -> JobStatus:
    """The status of every unit of ``job``.

    Parameters
    ----------
    job : a job file path or a loaded :class:`Job`.
    limit : how many failures and units to re-run to list.
    plan : the job's plan, when the caller has made it already.

    Returns
    -------
    JobStatus
        Per stage the units done, running, failed, blocked and pending.
    """
    job = job if isinstance(job, Job) else load_job(job)
    plan = plan or make_plan(job)
    state = State(job.dir)
    holder = lock_holder(job.dir)
    check = check_units(plan, state, save=holder is None)
    failed = {s: state.ids("failed", s) for s in STAGES}
    # Without a run holding the lock, running records are left over from a killed run.
    running = {s: state.ids("running", s) if holder is not None else set() for s in STAGES}
    stale = 0 if holder is not None else sum(len(state.ids("running", s)) for s in STAGES)
    counts = {s: dict.fromkeys(("total", *COLUMNS), 0) for s in STAGES}
    status = JobStatus(job, counts, holder)
    status.rerun, status.reruns = check.lines(plan, limit), len(check.reasons)
    if stale:
        status.notes.append(f"{stale:,} unit(s) were running when a run stopped; they are pending")
    bad: set[int] = set()  # failed or blocked units: their dependents are blocked
    tally = {s: [0] * len(COLUMNS) for s in STAGES}
    for i, unit in enumerate(plan.units):
        uid, stage = unit.id, unit.stage
        if check.done[i]:
            k = DONE
        elif uid in running[stage]:
            k = RUNNING
        elif uid in failed[stage]:
            k = FAILED
            bad.add(i)
            if len(status.failures) < limit:
                status.failures.append((stage, uid, state.read("failed", stage, uid) or {}))
        elif bad and not bad.isdisjoint(unit.deps):
            k = BLOCKED
            bad.add(i)
        else:
            k = PENDING
            if len(status.examples.setdefault(stage, [])) < 3:
                status.examples[stage].append(uid)
        tally[stage][k] += 1
    for stage, row in tally.items():
        counts[stage].update(zip(COLUMNS, row, strict=True), total=sum(row))
    return status


def dry_run(job: Job | str, limit: int = 20) -> JobStatus:
    """The plan of ``job``, fully checked (every stage config built), and what a run would do.

    Parameters
    ----------
    job : a job file path or a loaded :class:`Job`.
    limit : how many failures and units to re-run to list.

    Returns
    -------
    JobStatus
        The counts per stage, with notes on what is not checked.
    """
    from layerprobe.jobs.configs import check_models, has_pretrain_api
    from layerprobe.jobs.runner import prepare

    job, plan = prepare(job)
    check_models(job)
    status = job_status(job, limit, plan)
    if (job.pretrain or job.finetune is not None) and not has_pretrain_api():
        status.notes.append(
            "layerprobe.pretrain is not installed: [pretrain] / [finetune] settings are not checked "
            "and `run` will refuse this job"
        )
    return status


def format_status(status: JobStatus, title: str = "status") -> str:
    """A table of the counts per stage, then the failures with their log paths.

    Parameters
    ----------
    status : what :func:`job_status` returned.
    title : what the first line calls the table.

    Returns
    -------
    str
        The table, the failures and the units that run again, one per line.
    """
    job = status.job
    lines = [
        f"job {job.name} ({job.path}) — {title}; "
        + (
            f"running: {describe(status.holder)}"
            if status.holder is not None
            else "no run in progress"
        )
    ]
    width = max(8, *(len(f"{c['total']:,}") for c in status.counts.values()))
    lines.append(f"{'stage':<9}" + "".join(f"{h:>{width + 2}}" for h in ("units", *COLUMNS)))
    for stage, row in status.counts.items():
        if row["total"]:
            lines.append(
                f"{stage:<9}" + "".join(f"{row[h]:>{width + 2},}" for h in ("total", *COLUMNS))
            )
    total = {h: sum(r[h] for r in status.counts.values()) for h in ("total", *COLUMNS)}
    lines.append(f"{'all':<9}" + "".join(f"{total[h]:>{width + 2},}" for h in ("total", *COLUMNS)))
    if status.failures:
        lines.append(f"failed units ({status.failed:,}):")
        for stage, uid, record in status.failures:
            lines.append(f"  {stage} {uid}: {record.get('error', '?')}")
            lines.append(f"    log: {record.get('log', '?')}")
        if status.failed > len(status.failures):
            lines.append(
                f"  … and {status.failed - len(status.failures):,} more (--all lists them)"
            )
    lines += _rerun_lines(status)
    lines += [f"note: {n}" for n in status.notes]
    return "\n".join(lines)


def _rerun_lines(status: JobStatus) -> list[str]:
    if not status.reruns:
        return []
    head = f"done before, to run again ({status.reruns:,}):"
    return [head] + [f"  {line}" for line in status.rerun]


def format_plan(status: JobStatus) -> str:
    """The dry-run plan: units per stage, how many are done and how many a run would start.

    Parameters
    ----------
    status : what :func:`dry_run` returned.

    Returns
    -------
    str
        A table, one line per stage with units, then the job's folders and notes.
    """
    lines = [f"job {status.job.name} ({status.job.path}) — plan (dry run, nothing started)"]
    lines.append(f"{'stage':<9}{'units':>12}{'done':>12}{'to run':>12}  examples to run")
    for stage, row in status.counts.items():
        if row["total"]:
            todo = row["total"] - row["done"]
            examples = ", ".join(status.examples.get(stage, [])[:2])
            lines.append(f"{stage:<9}{row['total']:>12,}{row['done']:>12,}{todo:>12,}  {examples}")
    total = sum(r["total"] for r in status.counts.values())
    done = sum(r["done"] for r in status.counts.values())
    lines.append(f"{'all':<9}{total:>12,}{done:>12,}{total - done:>12,}")
    job = status.job
    lines.append(f"folders: job {job.dir}, cache {job.cache}, results {job.results}")
    lines += _rerun_lines(status)
    if status.holder is not None:
        lines.append(
            f"note: a run is in progress ({describe(status.holder)}); `run` would be refused"
        )
    lines += [f"note: {n}" for n in status.notes]
    return "\n".join(lines)
