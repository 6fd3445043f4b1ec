"""`layerprobe similarity`: linear CKA (debiased) between the layers of cached checkpoints."""

from __future__ import annotations

import argparse
import sys

from layerprobe.analysis.config import SimilarityConfig
from layerprobe.options import add_options, from_args


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
    add_options(p, SimilarityConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.analysis.similarity import format_similarity, layer_similarity, write_similarity
    from layerprobe.errors import check_folder

    config = from_args(SimilarityConfig, args)
    out = check_folder(config.out_dir(), "--out")
    table = layer_similarity(config)
    path = write_similarity(table, out)
    sys.stdout.write(format_similarity(table, config.format))
    for (task, split), part in table.groupby(["task", "split"], sort=True):
        print(
            f"layerprobe: {task} ({split}): CKA on {int(part['n_rows'].iloc[0])} images, "
            f"{part['model_key'].nunique()} checkpoint(s)",
            file=sys.stderr,
        )
    print(f"layerprobe: wrote {path}", file=sys.stderr)
    return 0
