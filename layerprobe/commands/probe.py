"""`layerprobe probe`: closed-form probes of every cached layer, appended to the results store."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import (
    LAYERS_HELP,
    add_quiet,
    parse_float_list,
    parse_int_list,
    whole_number,
)


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
    p.add_argument(
        "--layers",
        default="all",
        metavar="all|NAMES|GLOBS",
        help=LAYERS_HELP,
    )
    p.add_argument(
        "--shots",
        type=parse_int_list,
        default=[1, 5, 10, 25],
        metavar="K,…",
        help="examples per class; 0 = the whole train split (default 1,5,10,25)",
    )
    p.add_argument(
        "--seeds",
        type=whole_number(),
        default=3,
        metavar="N",
        help="few-shot draws per shot count (default 3)",
    )
    p.add_argument(
        "--l2",
        type=parse_float_list,
        default=None,
        metavar="λ,…",
        help="λ values, e.g. 2**-10,1,2**10 (default: ridge 2**-10 … 2**19, 30 values; logistic 1, 4, … 4**10)",
    )
    p.add_argument(
        "--probe",
        default="ridge",
        metavar="FAMILY,…",
        help="probe families: ridge (default: the closed form), logistic (softmax regression), "
        "knn (cosine k-NN, majority vote), knn_weighted (dinov2's weighted vote)",
    )
    p.add_argument(
        "--k",
        type=parse_int_list,
        default=None,
        metavar="K,…",
        help="neighbours of the k-NN families (default 10,20,50,200)",
    )
    p.add_argument(
        "--l2-select",
        default="val",
        metavar="val|fixed:VALUE",
        help="λ policy: val (default: best on validation, ties to the larger λ) or fixed:VALUE "
        "(fixed:1024 is big_vision's protocol; the grid then defaults to that one value)",
    )
    p.add_argument(
        "--backend",
        default="torch",
        help="torch (default), cuml (GPU, the gpu extra) or sklearn (slow reference)",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="torch backend device (default auto)",
    )
    p.add_argument(
        "--precision",
        default="float64",
        choices=["float64", "float32"],
        help="dtype of the Gram matrices and eigendecompositions (default float64)",
    )
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
    from layerprobe.probe import ProbeConfig, run_probes
    from layerprobe.probe.plan import check_plan_options

    families = [f.strip() for f in args.probe.split(",") if f.strip()] or ["ridge"]
    configs = [  # every family validated before any unit is probed
        ProbeConfig(
            shots=args.shots,
            seeds=args.seeds,
            l2s=args.l2 or None,
            l2_select=args.l2_select,
            layers=args.layers,
            backend=args.backend,
            device=args.device,
            precision=args.precision,
            probe=family,
            ks=args.k,
        )
        for family in dict.fromkeys(families)
    ]
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
        if summary.unconverged:
            print(
                f"layerprobe: warning: {summary.unconverged} {config.probe} fit(s) stopped at the "
                "iteration cap above the tolerance; their rows say converged = false",
                file=sys.stderr,
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
