"""`layerprobe upstream`: top-1 accuracy of a model's own classifier on a task, recorded."""

from __future__ import annotations

import argparse

from layerprobe.commands._common import add_model_options, whole_number
from layerprobe.runtime.devices import DEVICES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "upstream",
        help="score a model's own classifier head on a task's split (upstream accuracy)",
        description=(
            "Top-1 accuracy of the model's own classifier on a task's split (a timm ImageNet "
            "model on imagenet, a pre-training checkpoint on its upstream task), printed with what "
            "it was measured on and recorded as <cache>/<model_key>/upstream.json, so later probes of that model key "
            "carry it (where the checkpoint recorded no upstream accuracy of its own)."
        ),
    )
    add_model_options(p)
    p.add_argument("--task", required=True, help="the task the model's head was trained for")
    p.add_argument("--split", default="val", help="split to score (val)")
    p.add_argument(
        "--cache",
        default="cache",
        metavar="DIR",
        help="feature cache folder to record the figure in (cache)",
    )
    p.add_argument(
        "--batch-size", type=whole_number(), default=256, metavar="N", help="images per batch"
    )
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--data-root", metavar="DIR", help="task data root (default $LAYERPROBE_DATA)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.commands._common import model_config_from_args
    from layerprobe.errors import ConfigError
    from layerprobe.pretrain import upstream_score

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    score = upstream_score(
        model_config_from_args(args),
        args.task,
        args.split,
        cache_dir=args.cache,
        batch_size=args.batch_size,
        device=args.device,
        data_root=args.data_root,
    )
    print(label(args.model, score))
    return 0


def label(model: str, score) -> str:
    """``upstream accuracy of MODEL on TASK (split val, 5000 images): 0.529100``."""
    return (
        f"upstream accuracy of {model} on {score.task} (split {score.split}, {score.n} "
        f"images): {score.accuracy:.6f}"
    )
