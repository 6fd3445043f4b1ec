"""`layerprobe results`: read the results store (`show`: layer-wise accuracy tables)."""

from __future__ import annotations

import argparse
import sys

from layerprobe.analysis.config import RESULTS_HELP, ReadOptions, ShowConfig
from layerprobe.commands._common import parse_int_list
from layerprobe.options import add_options, from_args


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
    add_options(show, ShowConfig)
    show.set_defaults(run=run_show)
    knobs = sub.add_parser(
        "knobs",
        help="head weight decay / learning rate effects from matched pairs of checkpoints",
        description=(
            "Pair checkpoints that differ in one head knob only (equal upstream task, params, "
            "data fraction, epochs, other head knob and any --match columns) and print, per "
            "task and shot count, the mean paired difference (higher knob value minus lower) of "
            "US accuracy, DS accuracy at pre_logits and at the best layer, and the best layer's "
            "depth, with t-intervals over pairs. Says so when there are no matched pairs."
        ),
    )
    knobs.add_argument("--results", required=True, metavar="DIR|TABLE", help=RESULTS_HELP)
    knobs.add_argument(
        "--knob",
        action="append",
        choices=["head_wd", "head_lr"],
        help="only this knob (repeatable; default both)",
    )
    knobs.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="COLUMN",
        help="also require pairs to agree on this checkpoint column (repeatable; e.g. an "
        "architecture or pre-training seed column of an external table)",
    )
    knobs.add_argument("--shots", type=parse_int_list, metavar="K,…", help="only these shot counts")
    knobs.add_argument(
        "--level", type=float, default=0.95, help="coverage of the intervals (default 0.95)"
    )
    knobs.add_argument(
        "--format", default="table", choices=["table", "markdown", "csv", "json"],
        help="output format (csv: the effects, every column; json: notes, effects and pairs)",
    )  # fmt: skip
    add_options(knobs, ReadOptions, only=("skip_bad",))
    knobs.set_defaults(run=run_knobs)
    p.set_defaults(run=lambda args: (p.print_help(), 0)[1])


def run_show(args: argparse.Namespace) -> int:
    from layerprobe.results import filter_table, format_summary, layer_summary, load

    config = from_args(ShowConfig, args)
    table = load(config.results, skip_bad=config.skip_bad)
    table = filter_table(table, tasks=config.task, models=config.model, shots=config.shots)
    sys.stdout.write(format_summary(layer_summary(table), config.format))
    return 0


def run_knobs(args: argparse.Namespace) -> int:
    from layerprobe.analysis.pairs import format_pairs, knob_pairs, read_for_pairs

    table = read_for_pairs(args.results, match=args.match, skip_bad=args.skip_bad)
    knobs = tuple(dict.fromkeys(args.knob or ("head_wd", "head_lr")))
    result = knob_pairs(table, knobs=knobs, match=args.match, shots=args.shots, level=args.level)
    sys.stdout.write(format_pairs(result, args.format))
    return 0
