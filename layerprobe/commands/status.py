"""`layerprobe status JOB.toml`: units done / running / failed / blocked / pending per stage."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="how far a batch job is: units per stage and state, failures with their logs",
        description=(
            "Count the units of JOB.toml per stage that are done, running, failed, blocked (a "
            "dependency failed) or pending, and list failed units with their log files. Reads "
            "only the job file and its records (no model, no cache)."
        ),
    )
    p.add_argument("job", metavar="JOB.toml", help="the job file")
    p.add_argument("--all", action="store_true", help="list every failed unit (default: 20)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.jobs import format_status, job_status

    print(format_status(job_status(args.job, limit=10**9 if args.all else 20)))
    return 0
