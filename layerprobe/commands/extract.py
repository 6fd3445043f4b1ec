"""`layerprobe extract`: cache every requested layer's pooled features of a model on a task."""

from __future__ import annotations

import argparse

from layerprobe.commands._common import add_quiet, parse_float_list, parse_key_value


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
    p.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="timm:NAME (default namespace), torchvision:NAME, python:pkg.mod:factory, or a layerprobe checkpoint",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="weights (.pt/.pth/.safetensors) to load into the model",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        type=parse_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the model factory (repeatable; values are Python literals)",
    )
    p.add_argument(
        "--pretrained", action="store_true", help="download the model's pretrained weights"
    )
    p.add_argument(
        "--task", required=True, help="task name (see `layerprobe tasks`) or folder:PATH"
    )
    p.add_argument(
        "--data-root", metavar="DIR", help="where the task data lives (default $LAYERPROBE_DATA)"
    )
    p.add_argument(
        "--split",
        action="append",
        metavar="SPLIT",
        help="train, val, test, ... or all (default); repeatable or comma-separated",
    )
    p.add_argument(
        "--layers",
        default="all",
        metavar="all|NAMES|GLOBS",
        help="comma-separated layer names or globs (e.g. 'blocks.*,pre_logits'); default all",
    )
    p.add_argument("--pool", default="auto", help="auto, cls, mean, cls+mean or gap (default auto)")
    p.add_argument("--cache", required=True, metavar="DIR", help="cache folder")
    p.add_argument(
        "--image-size", type=int, metavar="N", help="input size (resize and centre crop)"
    )
    p.add_argument("--mean", type=parse_float_list, metavar="A,B,C", help="normalisation mean")
    p.add_argument("--std", type=parse_float_list, metavar="A,B,C", help="normalisation std")
    p.add_argument(
        "--dtype", default="float16", choices=["float16", "float32"], help="stored feature dtype"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=64,
        metavar="N",
        help="images per forward pass (default 64)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="DataLoader worker processes (default 0)",
    )
    p.add_argument(
        "--amp", default="none", choices=["none", "bf16"], help="bf16 autocast for the forward pass"
    )
    p.add_argument(
        "--force", action="store_true", help="extract again even if a complete cache exists"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images (recorded in the skipped_items attribute) instead of stopping",
    )
    add_quiet(p)
    p.set_defaults(run=run)


def _layers(text: str) -> str | list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    return "all" if names in ([], ["all"]) else names


def run(args: argparse.Namespace) -> int:
    from layerprobe.extract import extract, is_main_process

    paths = extract(
        args.model,
        args.task,
        splits=args.split or "all",
        layers=_layers(args.layers),
        pool=args.pool,
        cache_dir=args.cache,
        dtype=args.dtype,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        force=args.force,
        skip_bad=args.skip_bad,
        quiet=args.quiet,
        amp=args.amp,
        checkpoint=args.checkpoint,
        image_size=args.image_size,
        data_root=args.data_root,
        pretrained=args.pretrained,
        mean=args.mean,
        std=args.std,
        **dict(args.model_arg),
    )
    if is_main_process():
        for path in paths:
            print(path)
    return 0
