"""`layerprobe probe`: closed-form probes of every cached layer, appended to the results store."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import add_quiet
from layerprobe.options import add_options, given
from layerprobe.probe.config import ProbeConfig


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "probe",
        help="fit few-shot and full-data linear probes on cached features (results -> Parquet)",
        description=(
            "Probe every complete (model key, task) of a feature cache that has train and test "
            "splits: closed-form ridge probes for each layer, shot count, seed and L2 value, the "
            "L2 chosen on the val split (or a held-out part of train). One Parquet part file per "
            "(model key, task) is added to the results folder; units already there are skipped."
        ),
    )
    p.add_argument(
        "--cache",
        required=True,
        metavar="DIR",
        help="feature cache folder (from `layerprobe extract`)",
    )
    p.add_argument(
        "--results", required=True, metavar="DIR", help="results store folder (created if missing)"
    )
    p.add_argument(
        "--model-key", action="append", metavar="K", help="only this model key (repeatable)"
    )
    p.add_argument("--task", action="append", metavar="T", help="only this task (repeatable)")
    add_options(p, ProbeConfig)
    p.add_argument(
        "--force", action="store_true", help="probe units that are already in the store again"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="report and skip unusable cache files and units instead of stopping",
    )
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.errors import removed_if_failed
    from layerprobe.probe import run_probes
    from layerprobe.probe.plan import check_plan_options

    # every family validated before any unit is probed
    configs = ProbeConfig.families(**given(ProbeConfig, args))
    for config in configs:  # and every plan checked against the machine's memory, at once
        check_plan_options(config.shots, config.seeds, grid=len(config.grid))
    for config in configs:
        with removed_if_failed(args.results):  # a failure leaves no empty results folder behind
            summary = run_probes(
                args.cache,
                args.results,
                config,
                model_keys=args.model_key,
                tasks=args.task,
                force=args.force,
                skip_bad=args.skip_bad,
                quiet=args.quiet,
            )
        if not args.quiet:
            for line in summary.again:
                print(f"layerprobe: probing again {line}", file=sys.stderr)
            print(
                f"{config.probe}: probed {len(summary.written)} unit(s), skipped "
                f"{len(summary.skipped)} already in {args.results}"
                + (f", {len(summary.bad)} bad" if summary.bad else ""),
                file=sys.stderr,
            )
    return 0
