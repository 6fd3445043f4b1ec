"""`layerprobe run JOB.toml`: run every unit of a batch job that is not done yet."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import add_quiet, whole_number

MAX_WORKERS = 1024  # local worker processes: more is a typo, not a machine
MAX_RETRIES = 100

SLURM_FLAGS = (  # flag, [slurm] key, type, help
    ("--partition", "partition", str, "Slurm partition"),
    ("--gpus", "gpus", whole_number(), "GPUs per array task"),
    ("--cpus", "cpus", whole_number(), "CPUs per array task"),
    ("--mem-gb", "mem_gb", whole_number(), "memory per array task, GiB"),
    ("--time", "time", str, "time limit per array task: minutes or [D-]HH:MM:SS (default 240)"),
    ("--array-parallelism", "array_parallelism", whole_number(), "array tasks running at once"),
    ("--bundle", "bundle", whole_number(), "extract/probe units per array task (default 100)"),
    ("--cluster", "cluster", str, "slurm (default), or local: submitit's local executor"),
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a batch job file (TOML): pre-train, extract, probe, fine-tune; resumable",
        description=(
            "Expand JOB.toml into units (pretrain, extract per split, probe and finetune per "
            "model and task), skip those already done, and run the rest on local worker "
            "processes or on Slurm. Re-running the same file does only what is missing. "
            "Exit status 1 if a unit failed (each has its own log; see `layerprobe status`); "
            "130 after Ctrl-C, 143 after SIGTERM (units in flight are not done; run again)."
        ),
    )
    add_job_options(p)
    p.set_defaults(run=run)


def add_job_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `sweep`."""
    p.add_argument("job", metavar="JOB.toml", help="the job file")
    p.add_argument(
        "--workers",
        type=whole_number(1, MAX_WORKERS),
        metavar="N",
        help="local worker processes ([run] workers, default 1)",
    )
    p.add_argument(
        "--executor",
        choices=["local", "slurm"],
        help="where units run ([run] executor, default local)",
    )
    p.add_argument(
        "--retries",
        type=whole_number(0, MAX_RETRIES),
        metavar="N",
        help="attempts after a unit's first failure ([run] retries, default 0)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (units per stage, done, to run) and stop",
    )
    p.add_argument(
        "--force", action="store_true", help="write into a results folder that another job wrote"
    )
    group = p.add_argument_group("Slurm (override [slurm] of the job file)")
    for flag, key, kind, text in SLURM_FLAGS:
        group.add_argument(flag, dest=f"slurm_{key}", type=kind, metavar=key.upper(), help=text)
    add_quiet(p)


def run(args: argparse.Namespace, sweep: bool = False) -> int:
    from layerprobe.errors import ConfigError, check_writable
    from layerprobe.jobs import dry_run, format_plan, load_job, run_job
    from layerprobe.jobs.jobfile import slurm_settings
    from layerprobe.jobs.local import terminate_as_interrupt

    job = load_job(args.job)
    if sweep and not job.pretrain:
        raise ConfigError(
            f"{args.job} has no [pretrain] grid, so it is not a sweep; add one, or use "
            f"`layerprobe run {args.job}`"
        )
    if args.dry_run:
        print(format_plan(dry_run(job)))
        return 0
    check_writable(job.dir, f"{args.job}: [job] dir", create=False)  # its state and lock go there
    flags = {key: getattr(args, f"slurm_{key}") for _, key, _, _ in SLURM_FLAGS}
    slurm = slurm_settings({k: v for k, v in flags.items() if v is not None}, _flag_error)
    with terminate_as_interrupt():  # SIGTERM stops the run as Ctrl-C does; it resumes
        report = run_job(
            job,
            executor=args.executor,
            workers=args.workers,
            retries=args.retries,
            slurm=slurm,
            force=args.force,
            quiet=args.quiet,
        )
    print(summary(report), file=sys.stderr)
    return 0 if report.ok else 1


def summary(report) -> str:
    """``ran 24 unit(s): 22 done, 2 failed, 3 blocked; 10 were already done`` + per stage."""
    rows = report.counts
    total = {
        k: sum(r[k] for r in rows.values())
        for k in ("ran", "done", "failed", "blocked", "done_before")
    }
    head = (
        f"layerprobe: job {report.plan.job.name}: ran {total['ran']} unit(s): {total['done']} "
        f"done, {total['failed']} failed, {total['blocked']} blocked; "
        f"{total['done_before']} were already done"
    )
    stages = ", ".join(
        f"{s} {r['done'] + r['done_before']}/{r['total']}" for s, r in rows.items() if r["total"]
    )
    tail = f"layerprobe: complete units per stage: {stages}; results in {report.plan.job.results}"
    if report.failures:
        tail += f"\nlayerprobe: see `layerprobe status {report.plan.job.path}` for the failures and their logs"
    return f"{head}\n{tail}"


def _flag_error(message: str, table: str = "", key: str | None = None, index: int = 0):
    """A bad Slurm flag: the message of the [slurm] key, spelt as the flag."""
    from layerprobe.errors import ConfigError

    if key:
        message = message.replace(f"[slurm] {key}", "--" + key.replace("_", "-"))
    return ConfigError(message)
