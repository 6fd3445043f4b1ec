"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import ast

from layerprobe.options import parse_int_list, whole_number  # noqa: F401 (the commands' types)


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


def parse_float_list(text: str) -> list[float]:
    """Parse ``0.1,1,2**10`` into floats (``2**k`` and ``2^k`` allowed)."""
    out = []
    for t in text.split(","):
        t = t.strip()
        if not t:
            continue
        t = t.replace("^", "**")  # 2^k is spelt 2**k
        try:
            if "**" in t:
                base, exp = t.split("**")
                value = float(base) ** float(exp)
            else:
                value = float(t)
            if isinstance(value, complex):  # (-2)**0.5
                raise ValueError(t)
            out.append(value)
        except (ValueError, OverflowError) as err:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, got {text!r}"
            ) from err
    return out


LAYERS_HELP = (
    "layers: all (default), names, or globs, comma-separated; in a glob * stays inside one "
    "dotted part (layer*.* = layer1.0 …) and ** crosses parts (blocks.**)"
)


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


RESIZE_CHOICES = ("crop", "squash", "squash-crop", "border")


def add_extract_options(parser: argparse.ArgumentParser) -> None:
    """The extraction options (``extract``, ``scan``, …); :func:`extract_config_from_args` turns
    them into an ``ExtractConfig`` (whose defaults are the only defaults: None here = default)."""
    parser.add_argument("--layers", metavar="all|NAMES|GLOBS", help=LAYERS_HELP)
    parser.add_argument("--pool", help="auto (default), cls, mean, cls+mean or gap")
    parser.add_argument(
        "--resize",
        choices=RESIZE_CHOICES,
        help="how images become square: squash (whole image, VTAB), squash-crop (big_vision "
        "few-shot), crop (keep aspect, centre crop), border; default: the task's protocol "
        "(VTAB and non-square datasets squash), else the model's own",
    )
    parser.add_argument(
        "--dtype", choices=["float16", "float32"], help="stored feature dtype (default float16)"
    )
    parser.add_argument(
        "--amp", choices=["none", "bf16"], help="bf16 autocast for the forward pass (CUDA)"
    )
    parser.add_argument(
        "--batch-size", type=whole_number(), metavar="N", help="images per forward pass (64)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    parser.add_argument(
        "--workers", type=whole_number(), metavar="N", help="DataLoader worker processes (0)"
    )
    parser.add_argument(
        "--data-root", metavar="DIR", help="where the task data lives (default $LAYERPROBE_DATA)"
    )
    parser.add_argument(
        "--force", action="store_true", help="extract again even if a complete cache exists"
    )
    parser.add_argument(
        "--content-hash",
        action="store_true",
        help="identify folder: images by a hash of their bytes (default: names, sizes, mtimes)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images (recorded in the skipped_items attribute) instead of stopping",
    )


EXTRACT_FIELDS = (
    "layers", "pool", "resize", "dtype", "amp", "batch_size", "device", "workers", "data_root",
)  # fmt: skip


def extract_config_from_args(args: argparse.Namespace, **fixed):
    """The ``ExtractConfig`` of the options :func:`add_extract_options` added, plus ``fixed``."""
    from layerprobe.extract.config import ExtractConfig

    given = {
        name: getattr(args, name) for name in EXTRACT_FIELDS if getattr(args, name) is not None
    }
    flags = {
        name: True
        for name in ("force", "skip_bad", "quiet", "content_hash")
        if getattr(args, name, False)
    }
    return ExtractConfig.build(None, **given, **flags, **fixed)
