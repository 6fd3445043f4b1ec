"""`layerprobe fit`: the saturation fit (Eq. 1 on the upper hull) of every task and shot count."""

from __future__ import annotations

import argparse
import sys

from layerprobe.analysis.config import FitConfig
from layerprobe.options import add_options, from_args
from layerprobe.runtime.memory import return_freed_memory


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
    add_options(p, FitConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return_freed_memory()  # first: before pyarrow is imported (see runtime/memory.py)
    from layerprobe.analysis.fit import fit_store, write_fits
    from layerprobe.analysis.tables import format_fits
    from layerprobe.errors import check_writable

    config = from_args(FitConfig, args)
    out = check_writable(config.out_dir(), "--out", create=False)  # made when the fits are
    fits = fit_store(config.results, config, skip_bad=config.skip_bad)
    path = write_fits(fits, out / "fits.parquet")
    sys.stdout.write(format_fits(fits, config.format))
    print(f"layerprobe: wrote {path}", file=sys.stderr)
    return 0
