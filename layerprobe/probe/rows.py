"""One unit's store rows: read its features layer group by layer group, solve every probe of
the configuration, and lay the accuracies out as rows of the results schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from layerprobe.errors import DataError
from layerprobe.extract.cache import pretrain_with_upstream
from layerprobe.probe import policy
from layerprobe.probe.families import family_solver
from layerprobe.probe.features import (
    MAX_LOAD_BYTES,
    labels_and_widths,
    layer_chunks,
    load_features,
    select_layers,
)
from layerprobe.probe.plan import ProbePlan, plan_probes
from layerprobe.probe.problems import ProbeSet
from layerprobe.probe.units import Unit
from layerprobe.results.parts import check_accuracies, config_hash
from layerprobe.results.schema import COLUMNS, pretrain_columns

if TYPE_CHECKING:
    from layerprobe.probe.config import ProbeConfig


def probe_unit(unit: Unit, config: ProbeConfig, budget: int = MAX_LOAD_BYTES) -> pd.DataFrame:
    """All probes of one unit as store rows (one per layer, shots, seed and λ).

    ``budget`` bounds the bytes of features (all splits, float32) loaded at once.
    """
    val_info = unit.splits.get("val")
    layers = select_layers(unit, config.layers)
    grid = config.grid
    labels, widths = labels_and_widths(unit, layers)
    for split in ("test", "val"):
        if split in labels and len(labels[split]) == 0:
            raise DataError(
                f"{unit.name}: the {split} split has no rows; extract it again with --force"
            )
    plan = plan_probes(
        labels["train"],
        config.shots,
        config.seeds,
        has_val_split=val_info is not None,
        task=unit.task,
    )
    if plan.val is not None:
        y_eval = np.concatenate([labels["train"][plan.val], labels["test"]])
    else:
        y_eval = np.concatenate([labels["val"], labels["test"]])
    n_val = len(y_eval) - len(labels["test"])
    group = np.repeat([0, 1], [n_val, len(labels["test"])])
    num_classes = int(max(labels["train"].max(), y_eval.max())) + 1
    solve = family_solver(
        config.probe, config.backend, device=config.device, precision=config.precision
    )
    val_acc, test_acc, converged = [], [], []
    for chunk in layer_chunks(unit, layers, widths, budget=budget):
        train, evals = load_features(unit, chunk, plan.val)
        probes = ProbeSet(
            train, labels["train"], plan.subsets, evals, y_eval, group, 2, num_classes, chunk
        ).check()
        counts, done = solve(probes, grid)  # (layers, P, 2, L), (layers, P, L) or None
        val_acc.append(counts[:, :, 0] / max(n_val, 1))
        test_acc.append(counts[:, :, 1] / len(labels["test"]))
        converged.append(done)
    rows = build_rows(
        unit,
        layers,
        plan,
        grid=grid,
        val_acc=np.concatenate(val_acc),
        test_acc=np.concatenate(test_acc),
        n_test=len(labels["test"]),
        config=config,
        converged=None if converged[0] is None else np.concatenate(converged),
    )
    check_accuracies(rows, unit.name, val_may_be_missing=False)
    return rows


def build_rows(
    unit: Unit,
    layers: list[str],
    plan: ProbePlan,
    *,
    grid: np.ndarray,
    val_acc: np.ndarray,
    test_acc: np.ndarray,
    n_test: int,
    config: ProbeConfig,
    converged: np.ndarray | None,
) -> pd.DataFrame:
    """Store rows for accuracies.

    Parameters
    ----------
    unit : the unit probed; its train split names the model, depths and pretraining knobs.
    layers : the layers probed, in the order of the accuracies' first axis.
    plan : the probes (P (shots, seed) keys and their train subsets).
    grid : (L,) λ values (or k values for k-NN), ascending.
    val_acc, test_acc : (layers, P, L) accuracies in [0, 1].
    n_test : rows of the test split.
    config : the probe configuration (family, selection policy, backend).
    converged : (layers, P, L) bool for iterative fits, or None.

    Returns
    -------
    One row per (layer, probe, grid value), columns in the schema's order.
    """
    info = unit.splits["train"]
    num_layers, num_probes, num_l2 = val_acc.shape
    depth_of = dict(zip(info.layers, info.depths, strict=False))
    shape = (num_layers, num_probes, num_l2)
    li, pi, ji = (a.ravel() for a in np.indices(shape))
    keys = np.asarray(plan.keys, dtype=np.int64).reshape(-1, 2)
    selected = np.zeros(shape, bool)
    chosen = policy.select(config.l2_select, val_acc, grid)  # (layers, P)
    np.put_along_axis(selected, chosen[..., None], True, axis=-1)
    frame = pd.DataFrame(
        {
            "model": info.model or unit.model_key,
            "model_key": unit.model_key,
            # the checkpoint's knobs; `layerprobe upstream`'s record where it has no US accuracy
            **pretrain_columns(pretrain_with_upstream(info)),
            "task": unit.task,
            "layer": np.asarray(layers, dtype=object)[li],
            "depth": np.asarray([depth_of.get(n, np.nan) for n in layers], dtype=np.float64)[li],
            "shots": keys[pi, 0],
            "seed": keys[pi, 1],
            "l2": None if config.ks else grid[ji],
            "k": grid[ji] if config.ks else None,
            "val_accuracy": val_acc.ravel(),
            "test_accuracy": test_acc.ravel(),
            "n_train": np.asarray([len(s) for s in plan.subsets], dtype=np.int64)[pi],
            "n_test": n_test,
            "probe": config.probe,
            "l2_select": config.l2_select,
            "backend": config.backend,
            "config": config_hash(config.values_identity()),
            "created_at": pd.Timestamp(datetime.now(UTC)),
            "selected": selected.ravel(),
            "converged": None if converged is None else converged.ravel(),
        }
    )
    return frame[[c for c in COLUMNS if c in frame.columns]]
