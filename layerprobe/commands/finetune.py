"""`layerprobe finetune`: a new head, the whole network trained on a task; rows into the store."""

from __future__ import annotations

import argparse

from layerprobe.commands._common import add_model_options, add_quiet
from layerprobe.options import add_options, from_args
from layerprobe.pretrain.config import FinetuneConfig


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a whole model on a downstream task (results rows with probe=finetune)",
        description=(
            "Replace the head with a new one for the task's classes and train the whole network "
            "(AdamW, warm-up + cosine). Without --lr the rate is chosen from a small grid on the "
            "val split (VTAB-1k), then the final run trains on train + val. Test accuracy rows "
            "(probe=finetune, layer pre_logits, shots 0) go to the results store beside the "
            "probe rows of the same model key."
        ),
    )
    add_model_options(p)
    p.add_argument("--task", required=True, help="downstream task")
    p.add_argument("--results", required=True, metavar="DIR", help="results store folder")
    add_options(p, FinetuneConfig)
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.commands._common import model_config_from_args
    from layerprobe.errors import removed_if_failed
    from layerprobe.pretrain import finetune

    config = from_args(FinetuneConfig, args)
    with removed_if_failed(args.results):  # a failure leaves no empty results folder behind
        path = finetune(
            model_config_from_args(args),
            args.task,
            config,
            results_dir=args.results,
            quiet=args.quiet,
        )
    print(path)
    return 0
