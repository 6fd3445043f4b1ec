"""`layerprobe layers MODEL`: list a model's probe points (name, depth, raw shape, pooled width).

Also home of the model arguments every model-taking command shares: ``add_model_arguments``
and ``backbone_from_args``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from layerprobe.commands._common import parse_float_list, parse_key_value

if TYPE_CHECKING:  # the backbones room imports torch: only load it when a command runs
    from layerprobe.backbones import Backbone


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL plus --checkpoint, --pretrained, --image-size, --mean, --std, --model-arg."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="timm name (default namespace), torchvision:NAME, python:package.module:factory, "
        "or a layerprobe checkpoint path",
    )
    parser.add_argument(
        "--checkpoint", metavar="PATH", help="weights: .pt/.pth state dict or .safetensors"
    )
    parser.add_argument(
        "--pretrained", action="store_true", help="download the hub's pretrained weights"
    )
    parser.add_argument(
        "--image-size", type=int, metavar="N", help="input size in pixels (overrides the model's)"
    )
    # Spelt as in `extract` (R,G,B), so that one command line's options fit the other.
    parser.add_argument("--mean", type=parse_float_list, metavar="R,G,B", help="normalisation mean")
    parser.add_argument("--std", type=parse_float_list, metavar="R,G,B", help="normalisation std")
    parser.add_argument(
        "--model-arg",
        type=parse_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the model constructor (value as a Python literal); repeatable",
    )


def backbone_from_args(args: argparse.Namespace) -> Backbone:
    """Load the backbone described by the arguments of :func:`add_model_arguments`."""
    from layerprobe.backbones import load

    return load(
        args.model,
        args.checkpoint,
        pretrained=args.pretrained,
        image_size=args.image_size,
        mean=args.mean,
        std=args.std,
        **dict(args.model_arg),
    )


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "layers",
        help="list a model's probe points",
        description="Print each probe point of MODEL: name, depth, raw output shape, pooling, pooled width.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--pool",
        default="auto",
        help="auto (default), cls, mean, cls+mean or gap: pooling to a vector",
    )
    parser.add_argument(
        "--layers",
        default="all",
        help="names or globs, comma-separated (default: the default probe points)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    bb = backbone_from_args(args)
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
