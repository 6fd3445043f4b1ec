"""`layerprobe fit`: the saturation fit (Eq. 1 on the upper hull) of every task and shot count."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layerprobe.commands._common import parse_int_list, whole_number

RESULTS_HELP = (
    "results store folder, or a .csv/.parquet table with columns model, upstream_accuracy, "
    "task, test_accuracy (fractions in [0, 1]; optional: shots, layer, depth, seed, knobs, "
    "a family column; see docs/external.md)"
)


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `fit` and `report`."""
    p.add_argument("--results", required=True, metavar="DIR|TABLE", help=RESULTS_HELP)
    p.add_argument("--shots", type=parse_int_list, metavar="K,…", help="only these shot counts")
    p.add_argument(
        "--layer",
        default="pre_logits",
        metavar="NAME",
        help="DS accuracy at pre_logits (default), the best layer per checkpoint (best), or a layer",
    )
    p.add_argument(
        "--points",
        default="hull",
        choices=["hull", "all"],
        help="fit the rising part of the upper hull of the (US, DS) points (the paper; the "
        "falling tail after the best DS point is left out) or all points",
    )
    p.add_argument(
        "--holdout",
        "--holdout-top",
        dest="holdout_top",
        type=float,
        default=0.1,
        metavar="N|F",
        help="checkpoints of highest US accuracy held out for the prediction error: a count "
        "(≥ 3) or a fraction (at least 3 checkpoints; default 0.1); 0: none",
    )
    p.add_argument(
        "--bootstrap",
        type=whole_number(),
        default=0,
        metavar="N",
        help="also percentile-bootstrap intervals from N resamples, in *_boot_lo/_hi columns "
        "(default 0: none). Uncalibrated (they covered the truth 0-87%% of the time on known "
        "curves); the profile-likelihood intervals are the ones to read",
    )
    p.add_argument(
        "--form",
        default="eq1",
        choices=["eq1", "power"],
        help="eq1: k·e_US^α + e_IR (default); power: k·e_US^α (no saturation)",
    )
    p.add_argument(
        "--seed", type=whole_number(), default=0, help="seed of the bootstrap (default 0)"
    )
    add_skip_bad(p)


def add_skip_bad(p: argparse.ArgumentParser) -> None:
    """``--skip-bad`` of every command that reads the results store."""
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out bad result part files (each named in a warning) instead of stopping",
    )


ANALYSIS_OPTIONS = ("shots", "layer", "points", "holdout_top", "bootstrap", "form", "seed")


def analysis_options(args: argparse.Namespace) -> dict:
    """The options of :func:`add_analysis_options` as keyword arguments of the analysis."""
    return {name: getattr(args, name) for name in ANALYSIS_OPTIONS}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit DS error = k·(US error)^α + e_IR per task and shots (saturation)",
        description=(
            "For every downstream task and shot count, fit e_DS = k·e_US^α + e_IR to the rising "
            "part of the upper hull of the checkpoints' (US accuracy, DS accuracy) points, with "
            "95%% profile-likelihood intervals, a status that says whether the data determine "
            "e_IR (ok) or why not, the fitting error and the errors of the hull and the all-points "
            "fit predicting the held-out checkpoints of highest US accuracy. Prints the table and "
            "writes fits.parquet."
        ),
    )
    add_analysis_options(p)
    p.add_argument(
        "--group-by",
        metavar="COLUMN",
        help="fit each value of this checkpoint column (e.g. model, or an architecture family "
        "column) on its own hull",
    )
    p.add_argument(
        "--max-width",
        type=float,
        default=0.2,
        metavar="W",
        help="an e_IR interval wider than this does not determine e_IR (status wide_interval; "
        "default 0.2)",
    )
    p.add_argument(
        "--format",
        default="table",
        choices=["table", "markdown", "csv", "json"],
        help="output format (csv and json: every column, with intervals as *_lo / *_hi)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="folder for fits.parquet (default: analysis/ next to the results folder)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.analysis.fit import (
        READ_COLUMNS,
        check_group_by,
        check_options,
        fit_saturation,
        group_by_columns,
        write_fits,
    )
    from layerprobe.analysis.points import unknown_layer
    from layerprobe.analysis.tables import format_fits
    from layerprobe.errors import DataError, check_writable
    from layerprobe.results.external import extra_columns, is_table
    from layerprobe.results.read import ANALYSIS_SCHEMA, read_selected
    from layerprobe.results.show import check_shots

    check_options(args.points, args.holdout_top, args.bootstrap)
    default = Path(args.results).resolve().parent / "analysis"
    out = check_writable(args.out or default, "--out", create=False)  # made when the fits are
    # Only the columns a fit uses, and with a named layer only that layer's rows.
    layers = None if args.layer == "best" else [args.layer]
    columns = list(READ_COLUMNS)
    if args.group_by is not None:
        if args.group_by not in ANALYSIS_SCHEMA.names:
            extra = extra_columns(args.results) if is_table(args.results) else []
            check_group_by(args.group_by, [*group_by_columns(), *extra])
        columns = list(dict.fromkeys([*columns, args.group_by]))
    table = read_selected(args.results, columns=columns, layers=layers, skip_bad=args.skip_bad)
    if layers and table.empty:  # name the layers there are (the warnings were given above)
        every = read_selected(
            args.results, columns=["layer"], skip_bad=args.skip_bad, warn=lambda message: None
        )
        raise unknown_layer(args.layer, set(every["layer"]))
    check_shots(table, args.shots)
    fits = fit_saturation(
        table, group_by=args.group_by, max_width=args.max_width, **analysis_options(args)
    )
    if fits.empty:
        raise DataError(
            "nothing to fit: every task and shot count has fewer than 3 points on the hull; "
            "probe more checkpoints (of different US accuracy)"
        )
    path = write_fits(fits, out / "fits.parquet")
    sys.stdout.write(format_fits(fits, args.format))
    print(f"layerprobe: wrote {path}", file=sys.stderr)
    return 0
