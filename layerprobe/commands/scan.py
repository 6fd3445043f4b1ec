"""`layerprobe scan MODEL --tasks PATTERNS --out DIR`: every layer of one checkpoint on some tasks."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import (
    add_extract_options,
    add_model_options,
    extract_config_from_args,
    model_config_from_args,
)
from layerprobe.options import add_options, from_args
from layerprobe.probe.config import ProbeConfig

PROBE_FIELDS = ("shots", "seeds")  # the probe options scan offers (the others: defaults)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "scan",
        help="extract, probe and report every layer of one model on some tasks, in one command",
        description=(
            "Extract every layer of MODEL on the tasks (into OUT/cache), probe them at the default "
            "shots (into OUT/results), print the best layer per task, and write the layer-curve "
            "plots and OUT/report.html. A second run reuses everything."
        ),
    )
    add_model_options(p, positional=True)
    p.add_argument(
        "--tasks",
        required=True,
        action="append",
        metavar="PATTERN",
        help="task names or patterns, e.g. 'builtin/*' or 'vtab1k/*' (repeatable, comma-separated)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the scan's folder")
    add_options(p, ProbeConfig, only=PROBE_FIELDS)
    add_extract_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.errors import removed_if_failed
    from layerprobe.pipelines.scan import format_best, scan
    from layerprobe.probe.plan import check_plan_options

    patterns = [t.strip() for item in args.tasks for t in item.split(",") if t.strip()]
    # Every option is checked before anything is extracted.
    extract_config = extract_config_from_args(args, cache_dir=args.out)
    probe_config = from_args(ProbeConfig, args, only=PROBE_FIELDS)
    check_plan_options(probe_config.shots, probe_config.seeds, grid=len(probe_config.grid))
    with removed_if_failed(args.out):
        result = scan(
            model_config_from_args(args),
            patterns,
            args.out,
            extract_config=extract_config,
            probe_config=probe_config,
            quiet=extract_config.quiet,
        )
    sys.stdout.write(format_best(result.best))
    if result.report:
        print(f"report: {result.report}")
    return 0
