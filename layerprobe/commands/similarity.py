"""`layerprobe similarity`: linear CKA (debiased) between the layers of cached checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layerprobe.commands._common import add_quiet


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "similarity",
        help="linear CKA between every pair of layers (and across checkpoints) from the cache",
        description=(
            "Linear CKA with the debiased HSIC estimator between every pair of layers of each "
            "cached checkpoint, and between the same layer of different checkpoints on the same "
            "images, per task. Prints the maps and writes similarity.parquet (task, split, "
            "model_key, model_key_b, layer_a, layer_b, depth_a, depth_b, cka, n_rows)."
        ),
    )
    p.add_argument("--cache", required=True, metavar="DIR", help="feature cache folder")
    p.add_argument(
        "--task", action="extend", nargs="+", metavar="T", help="only these tasks (default all)"
    )
    p.add_argument(
        "--model",
        action="extend",
        nargs="+",
        metavar="M",
        help="only these model keys or model names (default all)",
    )
    p.add_argument("--split", default="test", help="which split's images (default test)")
    p.add_argument(
        "--rows",
        type=int,
        default=2000,
        metavar="N",
        help="at most N images per map, subsampled deterministically (default 2000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the subsample (default 0)")
    p.add_argument(
        "--within",
        action="store_true",
        help="only the maps within each checkpoint (no CKA across checkpoints)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="default cpu")
    p.add_argument(
        "--format", default="table", choices=["table", "csv", "json"], help="output format"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="folder for similarity.parquet (default: analysis/ next to the cache folder)",
    )
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.analysis.similarity import format_similarity, layer_similarity, write_similarity
    from layerprobe.errors import check_folder

    out = check_folder(args.out or Path(args.cache).resolve().parent / "analysis", "--out")
    table = layer_similarity(
        args.cache,
        tasks=args.task,
        models=args.model,
        split=args.split,
        rows=args.rows,
        seed=args.seed,
        across=not args.within,
        device=args.device,
        quiet=args.quiet,
    )
    path = write_similarity(table, out)
    sys.stdout.write(format_similarity(table, args.format))
    for (task, split), part in table.groupby(["task", "split"], sort=True):
        print(
            f"layerprobe: {task} ({split}): CKA on {int(part['n_rows'].iloc[0])} images, "
            f"{part['model_key'].nunique()} checkpoint(s)",
            file=sys.stderr,
        )
    print(f"layerprobe: wrote {path}", file=sys.stderr)
    return 0
