"""Constructed results stores for the analysis tests: known curves, known best layers.

Rows carry every column of the results contract (schema version 2) and are written with
pyarrow, one part file per model key, so both ``results.load`` and ``results.read_selected``
read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from layerprobe.results.parts import write_part

LAYERS = ("blocks.0", "blocks.1", "blocks.2", "pre_logits")
DEPTHS = (0.0, 1 / 3, 2 / 3, 1.0)


def curve_ds(us: np.ndarray, k: float, alpha: float, e_ir: float) -> np.ndarray:
    """DS accuracy on the paper's curve: 1 − (k·(1 − us)^α + e_IR)."""
    return 1.0 - (k * (1.0 - np.asarray(us, float)) ** alpha + e_ir)


# A row's value in every contract column a test does not name, one group of columns a line.
ROW_DEFAULTS = (
    dict(model="timm:toy", model_key="m0", upstream_task="builtin/upstream", upstream_accuracy=0.5)
    | dict(params=1_000_000, data_fraction=1.0, epochs=10.0, head_wd=0.0, head_lr=1e-3)
    | dict(task="t", layer="pre_logits", depth=1.0, shots=5, seed=0, l2=1.0)
    | dict(val_accuracy=0.9, test_accuracy=0.5, n_train=50, n_test=200)
    | dict(probe="ridge", l2_select="val", backend="torch", config="c0")
    | dict(created_at=pd.Timestamp("2025-01-01", tz="UTC"), selected=True, schema_version=2)
    | dict(k=pd.NA, converged=pd.NA)
)


def row(**values) -> dict:
    """One store row: ``ROW_DEFAULTS`` with ``values`` in their place."""
    return ROW_DEFAULTS | values


def probe_rows(acc: float, seeds=(0, 1), spread: float = 0.0, **values) -> list[dict]:
    """Rows of one (checkpoint, task, layer, shots): per seed, the selected λ with test accuracy
    ``acc ± spread`` (mean ``acc``) and an unselected λ with a test accuracy of 0 — an analysis
    that ignores ``selected`` gets wrong numbers."""
    out = []
    signs = np.linspace(-1, 1, len(seeds)) if len(seeds) > 1 else [0.0]
    for seed, sign in zip(seeds, signs, strict=True):
        out.append(
            row(seed=seed, l2=1.0, test_accuracy=acc + sign * spread, selected=True, **values)
        )
        out.append(
            row(seed=seed, l2=4.0, test_accuracy=0.0, val_accuracy=0.1, selected=False, **values)
        )
    return out


def write_store(rows: list[dict] | pd.DataFrame, folder: Path) -> Path:
    """Write rows through the store's part writer, one part per (model key, task)."""
    frame = pd.DataFrame(rows)
    frame["k"] = pd.array(frame["k"], dtype="Int64")
    frame["converged"] = pd.array(frame["converged"], dtype="boolean")
    for col in ("params", "n_train", "n_test", "shots", "seed", "schema_version"):
        frame[col] = pd.array(frame[col], dtype="Int64")
    for col in ("upstream_accuracy", "data_fraction", "epochs", "head_wd", "head_lr"):
        frame[col] = frame[col].astype("float64")
    for (key, task), part in frame.groupby(["model_key", "task"], sort=True):
        write_part(part, folder, {"model_key": key, "task": task, "probe": "ridge"})
    return folder


def curve_store(
    folder: Path,
    tasks: dict[str, tuple[float, float, float]],
    n: int = 13,
    below: float = 0.05,
    shots=(5,),
    us_range=(0.3, 0.9),
) -> Path:
    """A store of ``n`` checkpoints with US accuracy evenly in ``us_range``; on each task (known
    k, α, e_IR) the even-numbered checkpoints (the first and the last among them) lie on the
    curve at pre_logits and the odd ones ``below`` under it. Earlier layers: 0.8, 0.9, 0.95 × the pre_logits accuracy."""
    rows = []
    us = np.linspace(*us_range, n)
    for i, u in enumerate(us):
        for task, (k, alpha, e_ir) in tasks.items():
            for shot in shots:
                ds = float(curve_ds(u, k, alpha, e_ir)) - (below if i % 2 else 0.0)
                for layer, depth, scale in zip(LAYERS, DEPTHS, (0.8, 0.9, 0.95, 1.0), strict=True):
                    rows += probe_rows(
                        ds * scale,
                        spread=0.01,
                        model_key=f"m{i:02d}",
                        upstream_accuracy=float(u),
                        params=10 ** (5 + i % 3),
                        head_wd=(0.0, 0.1)[i % 2],
                        task=task,
                        shots=shot,
                        layer=layer,
                        depth=depth,
                    )
    return write_store(rows, folder)
