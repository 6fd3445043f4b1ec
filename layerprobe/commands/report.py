"""`layerprobe report`: the analysis of a results store as one self-contained HTML page."""

from __future__ import annotations

import argparse
import sys

from layerprobe.analysis.config import REPORT_EXCLUDES, ReportConfig
from layerprobe.options import add_options, from_args
from layerprobe.runtime.memory import return_freed_memory


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
    add_options(p, ReportConfig, exclude=REPORT_EXCLUDES)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return_freed_memory()  # first: before pyarrow is imported (see runtime/memory.py)
    from layerprobe.analysis.report import write_report
    from layerprobe.errors import check_writable, removed_if_failed

    config = from_args(ReportConfig, args)

    def progress(message: str) -> None:
        if not config.quiet:
            print(f"layerprobe: {message}", file=sys.stderr)

    check_writable(config.out, "--out", create=False)
    with removed_if_failed(config.out):
        path = write_report(
            config.results,
            config.out,
            config,
            progress=progress,
            skip_bad=config.skip_bad,
            svg=config.svg,
            all_shots=config.all_shots,
        )
    print(path)
    return 0
