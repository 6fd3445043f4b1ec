"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import ast

from layerprobe.layers import LAYERS_HELP  # noqa: F401  (re-exported for the commands)
from layerprobe.options import (  # noqa: F401  (re-exported for the commands)
    parse_float_list,
    parse_int_list,
    whole_number,
)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def parse_key_value(text: str) -> tuple[str, object]:
    """Parse ``key=value``; the value as a Python literal when it is one, else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r} (no key)")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def add_model_options(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    """The model options every model-taking command shares (``layers``, ``extract``, …):
    MODEL (positional or ``--model``), --checkpoint, --model-arg, --pretrained, --image-size,
    --mean, --std. :func:`model_config_from_args` turns them into a ``ModelConfig``."""
    spec_help = (
        "timm:NAME (default namespace), torchvision:NAME, python:package.module:factory, or a "
        "layerprobe checkpoint path"
    )
    if positional:
        parser.add_argument("model", metavar="MODEL", help=spec_help)
    else:
        parser.add_argument("--model", required=True, metavar="SPEC", help=spec_help)
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="weights (.pt/.pth/.safetensors) to load into the model",
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        type=parse_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="argument of the model constructor or factory (repeatable; values are Python "
        "literals; any name, e.g. pretrained=True for a factory's own flag)",
    )
    parser.add_argument(
        "--pretrained", action="store_true", help="download the hub's pretrained weights"
    )
    parser.add_argument(
        "--image-size",
        type=whole_number(),
        metavar="N",
        help="input size in pixels (overrides the model's)",
    )
    parser.add_argument("--mean", type=parse_float_list, metavar="R,G,B", help="normalisation mean")
    parser.add_argument("--std", type=parse_float_list, metavar="R,G,B", help="normalisation std")


def model_config_from_args(args: argparse.Namespace):
    """The ``ModelConfig`` of the options :func:`add_model_options` added."""
    from layerprobe.backbones.config import ModelConfig

    return ModelConfig(
        spec=args.model,
        checkpoint=args.checkpoint,
        model_args=dict(args.model_arg),
        pretrained=args.pretrained,
        image_size=args.image_size,
        mean=args.mean,
        std=args.std,
    )


def add_extract_options(parser: argparse.ArgumentParser) -> None:
    """The extraction options (``extract``, ``scan``; ``--quiet`` among them), made from
    ``ExtractConfig``'s fields; :func:`extract_config_from_args` turns them back into one."""
    from layerprobe.extract.config import ExtractConfig
    from layerprobe.options import add_options

    add_options(parser, ExtractConfig)


def extract_config_from_args(args: argparse.Namespace, **fixed):
    """The ``ExtractConfig`` of the options :func:`add_extract_options` added, plus ``fixed``."""
    from layerprobe.extract.config import ExtractConfig
    from layerprobe.options import given

    return ExtractConfig.build(None, **(given(ExtractConfig, args) | fixed))
