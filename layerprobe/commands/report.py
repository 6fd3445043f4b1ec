"""`layerprobe report`: the analysis of a results store as one self-contained HTML page."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import add_quiet
from layerprobe.commands.fit import add_analysis_options, analysis_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write report.html: saturation fits, layer saturation, knobs, plots",
        description=(
            "Analyse a results store (saturation fits, layer saturation and its correlation "
            "with e_IR, pre-training knobs) and write report.html (images embedded, no network), "
            "fits.parquet, layers.parquet and plots/ (PNG; SVG too with --svg) to --out."
        ),
    )
    add_analysis_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--svg", action="store_true", help="also write an SVG copy of every figure to plots/"
    )
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.analysis.fit import check_options
    from layerprobe.analysis.report import write_report
    from layerprobe.errors import check_writable, removed_if_failed

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"layerprobe: {message}", file=sys.stderr)

    check_options(args.points, args.holdout_top, args.bootstrap)
    check_writable(args.out, "--out", create=False)
    with removed_if_failed(args.out):
        path = write_report(
            args.results, args.out, progress=progress, skip_bad=args.skip_bad, svg=args.svg,
            **analysis_options(args),
        )  # fmt: skip
    print(path)
    return 0
