"""`layerprobe demo`: the paper's findings on the built-in suite, offline."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import add_quiet


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="pre-train a small ladder, probe every layer on the built-in suite, fit, report",
        description=(
            "Pre-train a ladder of small checkpoints on builtin/upstream, extract every layer on the "
            "built-in downstream tasks, probe them few-shot, fit the saturation curves on the upper "
            "hull and write a report, all offline; prints what it found. A second run reuses "
            "everything. About 10 minutes on 2 CPU cores (--quick: about 2)."
        ),
    )
    p.add_argument("--out", default="results/demo", metavar="DIR", help="(results/demo)")
    p.add_argument(
        "--quick", action="store_true", help="4 checkpoints, 6 tasks, 2 shot counts, 1 seed"
    )
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.jobs.demo import demo

    result = demo(args.out, quick=args.quick, quiet=args.quiet)
    sys.stdout.write(result.summary)
    return 0
