"""`layerprobe pretrain`: train a ladder model (or any timm model) on an upstream task."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import add_quiet, parse_key_value
from layerprobe.options import add_options, given
from layerprobe.pretrain.config import PretrainConfig


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pre-train a ViT / MLP-Mixer / ResNet on an upstream task (a resumable run folder)",
        description=(
            "Train a model of the ladders (--list-models) or any timm model on an upstream task "
            "with AdamW, warm-up + cosine, the head's own weight decay and learning-rate "
            "multiplier, and a seeded data fraction; score top-1 on the task's val split every "
            "epoch. RUN_DIR gets config.json, metrics.csv and, when done, checkpoint.pt (a "
            "layerprobe checkpoint: `layerprobe extract --model RUN_DIR/checkpoint.pt`). Running "
            "it again resumes from the last completed epoch. Under `torchrun --nproc-per-node N "
            "-m layerprobe pretrain ...` the processes share every batch (DDP)."
        ),
    )
    add_options(p, PretrainConfig, only=("model", "task"))
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (created; resumed when it exists)")
    add_options(p, PretrainConfig, exclude=("model", "task"))
    p.add_argument(
        "--model-arg",
        action="append",
        type=parse_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="model constructor argument over the rung's own (repeatable; Python literals)",
    )
    p.add_argument("--data-root", metavar="DIR", help="task data root (default $LAYERPROBE_DATA)")
    p.add_argument(
        "--force", action="store_true", help="start over in a run folder that holds another config"
    )
    p.add_argument("--list-models", action="store_true", help="print the ladders and exit")
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.errors import ConfigError

    if args.list_models:
        return _list_models(getattr(args, "task", None))
    if not getattr(args, "model", None) or not args.out:
        raise ConfigError("pretrain needs --model and --out (or --list-models)")
    from layerprobe.pretrain import pretrain
    from layerprobe.pretrain.distributed import is_main_process

    config = PretrainConfig(**given(PretrainConfig, args), model_args=dict(args.model_arg))
    path = pretrain(config, args.out, force=args.force, quiet=args.quiet, data_root=args.data_root)
    if is_main_process():
        print(path)
    return 0


def _list_models(task: str | None) -> int:
    from layerprobe.pretrain import list_models
    from layerprobe.tasks import get_task

    classes = get_task(task).num_classes if task else 120
    rows = list_models(classes)
    print(f"{'model':<16}{'family':<8}{'params':>12}{'px':>6}  architecture (arguments)")
    for r in rows:
        args = ", ".join(f"{k}={v}" for k, v in r["kwargs"].items())
        print(
            f"{r['name']:<16}{r['family']:<8}{r['params'] / 1e6:>11.2f}M{r['image_size']:>6}  "
            f"{r['spec']}" + (f" ({args})" if args else "")
        )
    print(f"parameters with a {classes}-class head; any timm name works too", file=sys.stderr)
    return 0
