"""Figures of the layer similarity table (``layerprobe similarity``) and the report's hook.

:func:`plot_similarity_maps` draws the CKA heat map of every checkpoint of a task;
:func:`plot_cka_to_last` draws each layer's CKA to its checkpoint's last layer against depth,
a panel per task (the same depth axis as the layer-accuracy curves, to read beside them).
:func:`similarity_figures` is what the report calls: it finds ``similarity.parquet`` in the
``analysis/`` folder beside the results folder (where ``layerprobe similarity --cache
ROOT/cache`` writes by default when the results are ``ROOT/results``) or in the report's own
folder, and draws both figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

from layerprobe.analysis import plots
from layerprobe.analysis.similarity import FILE, read_similarity

HEAT = colormaps["magma"]


def _within(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["model_key"] == table["model_key_b"]]


def plot_similarity_maps(table: pd.DataFrame, task: str, stem: str | Path) -> list[Path]:
    """CKA heat maps of one task: a panel per checkpoint, layers in depth order on both axes
    (CKA from 0 to 1; the map is symmetric with 1 on the diagonal)."""
    part = _within(table)
    part = part[part["task"] == task]
    groups = list(part.groupby("model_key", sort=True, observed=True))
    fig, axes = plots.panels(len(groups), width=4.2, height=3.6, top=0.8)
    image = None
    for ax, (key, cell) in zip(axes, groups, strict=True):
        order = cell.drop_duplicates("layer_a").sort_values("depth_a")["layer_a"].tolist()
        matrix = cell.pivot(index="layer_a", columns="layer_b", values="cka").loc[order, order]
        image = ax.imshow(matrix.to_numpy(float), cmap=HEAT, vmin=0.0, vmax=1.0)
        every = max(1, int(np.ceil(len(order) / 14)))  # at most ~14 labels per axis
        ticks = list(range(0, len(order), every))
        ax.set_xticks(ticks, [order[i] for i in ticks], rotation=90, fontsize=6)
        ax.set_yticks(ticks, [order[i] for i in ticks], fontsize=6)
        ax.set_title(str(key), fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, label="linear CKA (debiased)", shrink=0.8)
    n = int(part["n_rows"].iloc[0]) if len(part) else 0
    fig.suptitle(f"Layer × layer linear CKA, {task} ({n} images)", fontsize=10)
    return plots.save(fig, stem)


def cka_to_last(table: pd.DataFrame) -> pd.DataFrame:
    """Each layer's CKA to its checkpoint's last (deepest) layer.

    Returns
    -------
    DataFrame: task, model_key, layer, depth, cka_to_last, one row per (task, checkpoint,
    layer), sorted by depth.
    """
    part = _within(table)
    last = part.groupby(["task", "model_key"], observed=True)["depth_b"].transform("max")
    rows = part[part["depth_b"] == last]
    out = rows.rename(columns={"layer_a": "layer", "depth_a": "depth", "cka": "cka_to_last"})
    out = out[["task", "model_key", "layer", "depth", "cka_to_last"]]
    return out.sort_values(["task", "model_key", "depth"], kind="stable").reset_index(drop=True)


def plot_cka_to_last(table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """CKA of every layer to the last layer against layer depth: a panel per task, a line per
    checkpoint (labelled when there are at most 8)."""
    curves = cka_to_last(table)
    groups = list(curves.groupby("task", sort=True, observed=True))
    fig, axes = plots.panels(len(groups), width=4.5, height=3.0)
    for ax, (task, part) in zip(axes, groups, strict=True):
        keys = sorted(set(part["model_key"]))
        colours = plots.CMAP(np.linspace(0.0, 0.9, len(keys)))
        for key, colour in zip(keys, colours, strict=True):
            line = part[part["model_key"] == key]
            ax.plot(line["depth"], line["cka_to_last"], "-o", ms=3, c=colour, label=key)
        ax.set_title(str(task), fontsize=9)
        ax.set_xlabel("layer depth")
        ax.set_ylabel("CKA to last layer")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(min(0.0, float(part["cka_to_last"].min())) - 0.02, 1.02)
        if len(keys) <= 8:
            ax.legend(fontsize=6)
    fig.suptitle("Linear CKA (debiased) of each layer to the last layer", fontsize=10)
    return plots.save(fig, stem)


def find_similarity(results_dir: str | Path, out_dir: str | Path) -> Path | None:
    """The ``similarity.parquet`` the report shows: in ``analysis/`` beside the results folder,
    else in the report's folder; None when there is none."""
    for folder in (Path(results_dir).resolve().parent / "analysis", Path(out_dir)):
        if (folder / FILE).is_file():
            return folder / FILE
    return None


def similarity_figures(
    results_dir: str | Path, out_dir: str | Path
) -> tuple[str, list[tuple[Path, str]]] | None:
    """The report's layer-similarity figures: (a one-paragraph introduction, (PNG written to
    ``out_dir/plots``, its one-sentence caption) pairs), or None when no similarity table was
    found."""
    path = find_similarity(results_dir, out_dir)
    if path is None:
        return None
    table = read_similarity(path)
    folder = Path(out_dir) / "plots"
    figures = [
        (
            plot_cka_to_last(table, folder / "cka-to-last")[0],
            "Read, beside the layer-accuracy curves above, how fast each checkpoint's "
            "representation approaches its last layer's (CKA 1: the same up to rotation and "
            "scale).",
        )
    ]
    for task in sorted(set(_within(table)["task"])):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(task))
        figures.append(
            (
                plot_similarity_maps(table, task, folder / f"cka-{name}")[0],
                f"Read which layers of each checkpoint represent {task} alike (bright blocks: "
                "stretches of layers that change the representation little).",
            )
        )
    intro = (
        f"Linear CKA (debiased HSIC) between layers, from {path} (written by `layerprobe "
        "similarity`): first each layer's CKA to its checkpoint's last layer against depth, a "
        "panel per task; then the layer × layer map of every checkpoint, a figure per task."
    )
    return intro, figures
