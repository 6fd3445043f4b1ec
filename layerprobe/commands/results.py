"""`layerprobe results`: read the results store (`show`: layer-wise accuracy tables)."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import parse_int_list
from layerprobe.commands.fit import RESULTS_HELP, add_skip_bad


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("results", help="read the results store")
    sub = p.add_subparsers(dest="results_command", metavar="ACTION")
    show = sub.add_parser(
        "show",
        help="layer-wise accuracy per model × task × shots (mean ± std over seeds, best layer marked)",
        description=(
            "Print, for every model × task × shot count, each layer's test accuracy at the L2 value "
            "chosen on validation, as mean ± std over seeds, and mark the best layer."
        ),
    )
    show.add_argument("--results", required=True, metavar="DIR|TABLE", help=RESULTS_HELP)
    show.add_argument("--task", action="append", metavar="T", help="only this task (repeatable)")
    show.add_argument(
        "--model",
        action="append",
        metavar="M",
        help="only this model name or model key (repeatable)",
    )
    show.add_argument("--shots", type=parse_int_list, metavar="K,…", help="only these shot counts")
    show.add_argument(
        "--format",
        default="text",
        choices=["text", "csv", "markdown", "json"],
        help="output format",
    )
    add_skip_bad(show)
    show.set_defaults(run=run_show)
    p.set_defaults(run=lambda args: (p.print_help(), 0)[1])


def run_show(args: argparse.Namespace) -> int:
    from layerprobe.results import filter_table, format_summary, layer_summary, load

    table = load(args.results, skip_bad=args.skip_bad)
    table = filter_table(table, tasks=args.task, models=args.model, shots=args.shots)
    sys.stdout.write(format_summary(layer_summary(table), args.format))
    return 0
