"""`layerprobe results`: read the results store (`show`: layer-wise accuracy tables)."""

from __future__ import annotations

import argparse
import sys

from layerprobe.analysis.config import KnobsConfig, ShowConfig
from layerprobe.options import add_options, from_args
from layerprobe.runtime.memory import return_freed_memory


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
            "data fraction, epochs, other head knob, pre-training model, seed and schedule where "
            "recorded, and any --match columns) and print, per "
            "task and shot count, the mean paired difference (higher knob value minus lower) of "
            "US accuracy, DS accuracy at pre_logits and at the best layer, and the best layer's "
            "depth, with t-intervals over pairs. Says so when there are no matched pairs."
        ),
    )
    add_options(knobs, KnobsConfig)
    knobs.set_defaults(run=run_knobs)
    p.set_defaults(run=lambda args: (p.print_help(), 0)[1])


def run_show(args: argparse.Namespace) -> int:
    return_freed_memory()  # first: before pyarrow is imported (see runtime/memory.py)
    from layerprobe.results import filter_table, format_summary, layer_summary, load

    config = from_args(ShowConfig, args)
    table = load(config.results, skip_bad=config.skip_bad)
    table = filter_table(table, tasks=config.task, models=config.model, shots=config.shots)
    sys.stdout.write(format_summary(layer_summary(table), config.format))
    return 0


def run_knobs(args: argparse.Namespace) -> int:
    return_freed_memory()  # first: before pyarrow is imported (see runtime/memory.py)
    from layerprobe.analysis.pairs import format_pairs, knob_pairs, read_for_pairs

    config = from_args(KnobsConfig, args)
    table = read_for_pairs(
        config.results,
        match=config.match,
        skip_bad=config.skip_bad,
        row_cache=not config.no_row_cache,
    )
    result = knob_pairs(
        table, knobs=config.knobs(), match=config.match, shots=config.shots, level=config.level
    )
    sys.stdout.write(format_pairs(result, config.format))
    return 0
