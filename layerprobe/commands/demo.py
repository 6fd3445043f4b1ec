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
            "Pre-train a ladder of small checkpoints on builtin/upstream (20 checkpoints: one long "
            "schedule with a snapshot per epoch, and short runs that differ in one head knob, so "
            "matched pairs show the knobs' effects), extract every layer on the 22 built-in "
            "downstream tasks, probe them few-shot with 3 seeds, fit the saturation curves on the "
            "upper hull and write a report, all offline; prints what it found, each finding with "
            "its interval or as undetermined. A second run reuses everything. About 5.6 minutes on "
            "a quiet 2-core CPU, longer on a busy one (--quick: about 1.1 minutes); measured "
            "2026-12-07 (docs/demo.md). It shows where it is (stage, "
            "unit i of n, time left) unless --quiet."
        ),
    )
    p.add_argument("--out", default="results/demo", metavar="DIR", help="(results/demo)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="8 checkpoints (4 matched head-weight-decay pairs) on 6 tasks",
    )
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.pipelines.demo import demo

    result = demo(args.out, quick=args.quick, quiet=args.quiet)
    sys.stdout.write(result.summary)
    return 0
