"""`layerprobe extract`: cache every requested layer's pooled features of a model on a task."""

from __future__ import annotations

import argparse

from layerprobe.commands._common import (
    add_extract_options,
    add_model_options,
    extract_config_from_args,
    model_config_from_args,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "extract",
        help="run a model over a task once and cache every layer's pooled features (HDF5)",
        description=(
            "Run a model over a task's splits once, capturing every requested layer in one forward "
            "pass, and write <cache>/<model_key>/<task>/<split>.h5. A complete cache is reused; an "
            "interrupted one resumes. Under `torchrun --nproc-per-node N -m layerprobe extract ...` "
            "the rows are split across the processes."
        ),
    )
    add_model_options(p)
    p.add_argument(
        "--task", required=True, help="task name (see `layerprobe tasks`) or folder:PATH"
    )
    p.add_argument(
        "--split",
        action="append",
        metavar="SPLIT",
        help="train, val, test, ... or all (default); repeatable or comma-separated",
    )
    p.add_argument("--cache", required=True, metavar="DIR", help="cache folder")
    add_extract_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.errors import removed_if_failed
    from layerprobe.extract import extract, is_main_process

    config = extract_config_from_args(args, cache_dir=args.cache, splits=args.split or "all")
    with removed_if_failed(args.cache):  # a failure leaves no empty cache folder behind
        paths = extract(model_config_from_args(args), args.task, config)
    if is_main_process():
        for path in paths:
            print(path)
    return 0
