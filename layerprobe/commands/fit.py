"""`layerprobe fit`: the saturation fit (Eq. 1 on the upper hull) of every task and shot count."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layerprobe.commands._common import parse_int_list, whole_number


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `fit` and `report`."""
    p.add_argument("--results", required=True, metavar="DIR", help="results store folder")
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
        help="fit the upper hull of the (US, DS) points (the paper) or all points",
    )
    p.add_argument(
        "--holdout-top",
        type=float,
        default=0.1,
        metavar="F",
        help="fraction of checkpoints with the highest US accuracy held out for the prediction "
        "error (default 0.1)",
    )
    p.add_argument(
        "--bootstrap",
        type=whole_number(),
        default=100,
        metavar="N",
        help="bootstrap resamples for the intervals (default 100; 0: none)",
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


ANALYSIS_OPTIONS = ("shots", "layer", "points", "holdout_top", "bootstrap", "form", "seed")


def analysis_options(args: argparse.Namespace) -> dict:
    """The options of :func:`add_analysis_options` as keyword arguments of the analysis."""
    return {name: getattr(args, name) for name in ANALYSIS_OPTIONS}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit DS error = k·(US error)^α + e_IR per task and shots (saturation)",
        description=(
            "For every downstream task and shot count, fit e_DS = k·e_US^α + e_IR to the upper "
            "hull of the checkpoints' (US accuracy, DS accuracy) points, with bootstrap intervals, "
            "the fitting error and the error predicting the held-out checkpoints of highest US "
            "accuracy. Prints the table and writes fits.parquet."
        ),
    )
    add_analysis_options(p)
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
    from layerprobe.errors import DataError, check_writable
    from layerprobe.results.fit import READ_COLUMNS, check_options, fit_saturation, write_fits
    from layerprobe.results.points import unknown_layer
    from layerprobe.results.read import read_selected
    from layerprobe.results.tables import format_fits

    check_options(args.points, args.holdout_top, args.bootstrap)
    default = Path(args.results).resolve().parent / "analysis"
    out = check_writable(args.out or default, "--out", create=False)  # made when the fits are
    # Only the columns a fit uses, and with a named layer only that layer's rows.
    layers = None if args.layer == "best" else [args.layer]
    table = read_selected(args.results, columns=READ_COLUMNS, layers=layers)
    if layers and table.empty:  # name the layers there are
        names = set(read_selected(args.results, columns=["layer"])["layer"])
        raise unknown_layer(args.layer, names)
    fits = fit_saturation(table, **analysis_options(args))
    if fits.empty:
        raise DataError(
            "nothing to fit: every task and shot count has fewer than 3 points on the hull; "
            "probe more checkpoints (of different US accuracy)"
        )
    path = write_fits(fits, out / "fits.parquet")
    sys.stdout.write(format_fits(fits, args.format))
    print(f"layerprobe: wrote {path}", file=sys.stderr)
    return 0
