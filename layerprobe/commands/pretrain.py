"""`layerprobe pretrain`: train a ladder model (or any timm model) on an upstream task."""

from __future__ import annotations

import argparse
import sys

from layerprobe.commands._common import add_quiet, parse_int_list, parse_key_value, whole_number

# option -> (PretrainConfig field, type, help); None-valued options keep the config's default.
OPTIONS = {
    "--data-fraction": ("data_fraction", float, "share of the train split, in (0, 1] (1)"),
    "--epochs": ("epochs", whole_number(), "passes over the (subset of the) train split (7)"),
    "--batch-size": ("batch_size", whole_number(), "images per step, over all processes (128)"),
    "--lr": ("lr", float, "AdamW peak learning rate (1e-3)"),
    "--wd": ("wd", float, "weight decay of the body's weights (0.05)"),
    "--head-wd": ("head_wd", float, "weight decay of the classifier head (default --wd)"),
    "--head-lr-mult": ("head_lr_mult", float, "head learning rate = lr x this (1)"),
    "--warmup-epochs": ("warmup_epochs", float, "linear warm-up, in epochs (1)"),
    "--label-smoothing": ("label_smoothing", float, "cross-entropy label smoothing (0)"),
    "--image-size": ("image_size", whole_number(), "input size in px (default: the rung's own)"),
    "--seed": ("seed", whole_number(), "seeds init, subset, order and augmentation (0)"),
    "--snapshots": (
        "snapshots",
        parse_int_list,
        "also save checkpoints after these epochs, e.g. 1,2",
    ),
}


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
    p.add_argument("--model", metavar="MODEL", help="ladder name (see --list-models) or timm name")
    p.add_argument("--task", default=None, metavar="TASK", help="upstream task (builtin/upstream)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (created; resumed when it exists)")
    for option, (_, kind, text) in OPTIONS.items():
        p.add_argument(option, type=kind, default=None, help=text)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16 = bfloat16 autocast (CUDA)")  # fmt: skip
    p.add_argument(
        "--model-arg", action="append", type=parse_key_value, default=[], metavar="KEY=VALUE",
        help="model constructor argument over the rung's own (repeatable; Python literals)",
    )  # fmt: skip
    p.add_argument("--data-root", metavar="DIR", help="task data root (default $LAYERPROBE_DATA)")
    p.add_argument("--force", action="store_true",
                   help="start over in a run folder that holds another config")  # fmt: skip
    p.add_argument("--list-models", action="store_true", help="print the ladders and exit")
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.errors import ConfigError

    if args.list_models:
        return _list_models(args.task)
    if not args.model or not args.out:
        raise ConfigError("pretrain needs --model and --out (or --list-models)")
    from layerprobe.pretrain import PretrainConfig, pretrain
    from layerprobe.pretrain.distributed import is_main_process

    given = {field: getattr(args, option[2:].replace("-", "_"))
             for option, (field, _, _) in OPTIONS.items()}  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    if args.task is not None:
        given["task"] = args.task
    config = PretrainConfig(
        model=args.model, device=args.device, precision=args.precision,
        model_args=dict(args.model_arg), **given,
    )  # fmt: skip
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
        print(f"{r['name']:<16}{r['family']:<8}{r['params'] / 1e6:>11.2f}M{r['image_size']:>6}  "
              f"{r['spec']}" + (f" ({args})" if args else ""))  # fmt: skip
    print(f"parameters with a {classes}-class head; any timm name works too", file=sys.stderr)
    return 0
