"""`layerprobe layers MODEL`: list a model's probe points (name, depth, raw shape, pooled width)."""

from __future__ import annotations

import argparse

from layerprobe.commands._common import LAYERS_HELP, add_model_options, model_config_from_args


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "layers",
        help="list a model's probe points",
        description="Print each probe point of MODEL: name, depth, raw output shape, pooling, pooled width.",
    )
    add_model_options(parser, positional=True)
    parser.add_argument(
        "--pool",
        default="auto",
        help="auto (default), cls, mean, cls+mean or gap: pooling to a vector",
    )
    parser.add_argument(
        "--layers",
        default="all",
        help=LAYERS_HELP,
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    bb = model_config_from_args(args).load()
    points = bb.select(args.layers)
    widths = bb.pooled_widths(args.layers, args.pool)
    methods = bb.layer_pooling(args.layers, args.pool)
    rows = [("layer", "depth", "kind", "raw shape", "pooling", "width")]
    for p in points:
        shape = "(B, " + ", ".join(str(s) for s in p.shape) + ")"
        rows.append((p.name, f"{p.depth:.3f}", p.kind, shape, methods[p.name], str(widths[p.name])))
    print(f"{bb.spec}  input {bb.preprocess.input_size}px  key {bb.model_key(args.pool)}")
    sizes = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(size) for cell, size in zip(r, sizes, strict=True)).rstrip())
    return 0
