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
            "everything. About 7 minutes on a quiet 2-core CPU, longer on a busy one (--quick: about "
            "1.5 minutes); it shows where it is (stage, unit i of n, time left) unless --quiet."
        ),
    )
    p.add_argument("--out", default="results/demo", metavar="DIR", help="(results/demo)")
    p.add_argument(
        "--quick", action="store_true", help="4 checkpoints, 6 tasks, 2 shot counts, 1 seed"
    )
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.pipelines.demo import demo

    result = demo(args.out, quick=args.quick, quiet=args.quiet)
    sys.stdout.write(result.summary)
    return 0
