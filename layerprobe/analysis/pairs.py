"""Knob effects as matched comparisons: checkpoints that differ in one head knob only.

Means per knob value over all checkpoints (:func:`layerprobe.analysis.knobs.knob_effects`) mix
the knob with whatever else changed with it: where every ViT was trained with one head learning
rate and every ResNet with another, the "effect" of the learning rate is the architecture's.
:func:`knob_pairs` reads the effect of a head knob (``head_wd``, ``head_lr``; the paper's
Appendix C) only from **matched pairs**: two checkpoints whose upstream task, parameter count,
data fraction, epochs, other head knob, and pre-training architecture, seed and schedule
(``pretrain_model``, ``pretrain_seed``, ``pretrain_schedule``: results schema 3) are equal (and
any ``match`` columns, e.g. a family column of an external table), and whose knob differs.

Per pair and downstream task (and shots, probe) it takes the paired differences (higher knob
value minus lower) of the US accuracy, of the DS accuracy at ``pre_logits`` and at the best
layer, and of the best layer's depth (the first layer, in depth order, with the highest mean
accuracy over seeds: does the head's weight decay move information into lower layers?). Over
the pairs of one comparison it reports the mean difference with a two-sided t-interval
(``mean ± t(level; n − 1) · sd / √n``; none from a single pair).

What the store cannot match on is said, not assumed: the pre-training identity columns are
known only for checkpoints made by ``layerprobe pretrain`` and probed into schema 3 parts. Where
one of them is unknown for some of the checkpoints a knob is compared over, pairs are not
matched on it (as before schema 3: the parameter count stands in for the architecture), and the
first note says which column, for how many checkpoints, and that pairs may differ in it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from layerprobe.analysis.config import HEAD_KNOBS
from layerprobe.analysis.config import PAIRS_FORMATS as FORMATS
from layerprobe.analysis.points import (
    GROUP,
    KNOBS,
    POINT_COLUMNS,
    best_layers,
    seed_means,
    with_upstream_task,
)
from layerprobe.errors import ConfigError, DataError
from layerprobe.results.frames import distinct_rows
from layerprobe.results.schema import PRETRAIN_IDENTITY
from layerprobe.results.show import check_shots

# The pre-training identity columns in words (for the notes).
IDENTITY_WORDS = {
    "pretrain_model": "the architecture (pretrain_model)",
    "pretrain_seed": "the pre-training seed (pretrain_seed)",
    "pretrain_schedule": "the schedule (pretrain_schedule)",
}
MEASURES = {
    "d_us": "US accuracy",
    "d_ds": "DS accuracy at pre_logits",
    "d_ds_best": "DS accuracy at the best layer",
    "d_best_depth": "depth of the best layer",
}
PAIR_COLUMNS = [*GROUP, "knob", "low", "high", "pairs", "checkpoints"] + [
    f"{m}{s}" for m in MEASURES for s in ("", "_lo", "_hi")
]


@dataclass
class KnobPairs:
    """The result of :func:`knob_pairs`.

    Attributes
    ----------
    effects : one row per (upstream task, task, shots, probe, knob, low, high): ``pairs`` (the
        matched pairs it rests on), ``checkpoints``, and per measure of :data:`MEASURES` the mean
        paired difference (high − low; accuracies in 0–1, depth in 0–1) with its interval
        ``*_lo`` / ``*_hi`` (NaN from one pair).
    pairs : one row per matched pair: knob, low, high, the matched columns' values, and the
        checkpoints (model keys, ``;``-joined where several share a value) on each side.
    notes : plain sentences: what was matched on (the first says which pre-training identity
        column is unknown for some checkpoints, so not matched, only where one is), and, per
        knob, either the comparisons found or why there are none.
    matched_on : the columns pairs are equal in (per knob).
    """

    effects: pd.DataFrame
    pairs: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    matched_on: dict[str, list[str]] = field(default_factory=dict)


def knob_pairs(
    table: pd.DataFrame,
    *,
    knobs: Sequence[str] = HEAD_KNOBS,
    match: Sequence[str] = (),
    shots: Sequence[int] | None = None,
    level: float = 0.95,
    checkpoints: pd.DataFrame | None = None,
    means: pd.DataFrame | None = None,
) -> KnobPairs:
    """Paired differences between checkpoints that differ in one knob only (module doc).

    Parameters
    ----------
    table : selected-λ store rows (``read_selected``; rows of other λ are ignored), with the
        columns model_key, upstream_task, upstream_accuracy, the knobs, task, layer, depth,
        shots, seed, probe, test_accuracy and the ``match`` columns; the pre-training identity
        columns (``pretrain_model``, ``pretrain_seed``, ``pretrain_schedule``) where it has
        them (a table without them is matched as if they were unknown).
    knobs : the knobs to compare (each a column; default head_wd and head_lr).
    match : further columns a pair must agree on (each must describe the checkpoint).
    shots : only these shot counts.
    level : the intervals' coverage (default 0.95).
    checkpoints : the checkpoints' numbers (US accuracy, knobs, pre-training seed) when they were
        read apart from ``table`` (:func:`~layerprobe.results.read.read_selected_apart`).
    means : ``table``'s :func:`~layerprobe.analysis.points.seed_means`, when the caller has them.

    Returns
    -------
    :class:`KnobPairs`.

    Raises
    ------
    ConfigError : an unknown knob or match column, a match column that varies within a
        checkpoint, or a level outside (0, 1).
    """
    if not 0 < level < 1:
        raise ConfigError(f"--level {level:g} is not in (0, 1); e.g. 0.95")
    columns = [*table.columns, *(() if checkpoints is None else checkpoints.columns)]
    for name in [*knobs, *match]:
        if name not in columns:
            raise ConfigError(
                f"column {name!r} is not in the results; use one of "
                f"{', '.join(sorted(set(map(str, columns))))}"
            )
    check_shots(table, shots)
    if shots:
        table = table[table["shots"].isin(list(shots))]
        means = None if means is None else means[means["shots"].isin(list(shots))]
    if table.empty:
        raise DataError("no results to compare: the results have no rows")
    present = [c for c in PRETRAIN_IDENTITY if c in columns]
    info = _checkpoints(table, [*KNOBS, *present, *match], checkpoints)
    for name in PRETRAIN_IDENTITY:
        if name not in info.columns:
            info[name] = None
    values = _values(seed_means(table) if means is None else means)
    effects, pairs, notes = [], [], []
    matched_on = {}
    compared: set[str] = set()  # the checkpoints of the knobs compared
    for knob in knobs:
        have = info[info[knob].notna()]
        whole = [c for c in PRETRAIN_IDENTITY if len(have) and have[c].notna().all()]
        if have[knob].nunique() > 1:
            compared |= set(have["model_key"])
        identity = ["upstream_task", *(k for k in KNOBS if k != knob), *whole, *match]
        identity = list(dict.fromkeys(c for c in identity if c != knob))
        known = [c for c in identity if info[c].notna().any()]
        matched_on[knob] = known
        units, note = _pair_units(info, knob, known, identity)
        notes.append(note)
        if not units:
            continue
        pairs.append(_pairs_frame(units, knob, known))
        effects.append(_effects(units, values, knob, level))
    notes = [
        _identity_note(info[info["model_key"].isin(compared)], match),
        *notes,
        *_depth_notes(effects),
    ]
    effect_frame = (
        pd.concat(effects, ignore_index=True) if effects else pd.DataFrame(columns=PAIR_COLUMNS)
    )
    pair_frame = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame()
    return KnobPairs(effect_frame, pair_frame, notes, matched_on)


def _checkpoints(
    table: pd.DataFrame, columns: list[str], checkpoints: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per checkpoint: upstream task, US accuracy and ``columns`` (each must be one value
    per checkpoint), from ``table`` and the ``checkpoints`` read apart from it."""
    cols = list(dict.fromkeys(["upstream_task", "upstream_accuracy", *columns]))
    # Distinct rows first (a few per checkpoint, in order of first appearance, so each
    # column's first non-missing value and its count of values are those of every row).
    present = [c for c in ["model_key", *cols] if c in table.columns]
    frame = with_upstream_task(distinct_rows(table[present]))
    frame["model_key"] = frame["model_key"].astype(str)
    if checkpoints is not None:  # every distinct combination of the two, for each checkpoint
        apart = [c for c in cols if c in checkpoints.columns and c not in present]
        combos = checkpoints[["model_key", *apart]].astype({"model_key": str})
        frame = frame.merge(combos, on="model_key", how="left")
    frame = frame[["model_key", *cols]].copy()
    for col in cols:
        if frame[col].dtype == object or isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(object)
    per = frame.groupby("model_key", sort=True)
    varies = [c for c in cols if c != "upstream_accuracy" and (per[c].nunique() > 1).any()]
    if varies:
        raise ConfigError(
            f"column(s) {', '.join(varies)} vary within a checkpoint, so they cannot match "
            "checkpoints; match on columns that describe the checkpoint (e.g. an architecture)"
        )
    return per[cols].first().reset_index()


def _values(means: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint and (upstream task, task, shots, probe): DS accuracy at pre_logits, at the
    best layer, and the best layer's depth."""
    keys = ["model_key", *GROUP]
    best = means.loc[best_layers(means, keys)]
    out = best[keys].assign(ds_best=best["accuracy"].to_numpy(), best_depth=best["depth"])
    pre = means[means["layer"] == "pre_logits"][[*keys, "accuracy"]]
    out = out.merge(pre.rename(columns={"accuracy": "ds"}), on=keys, how="left")
    out["upstream_task"] = out["upstream_task"].astype(str)
    return out


def _key(value) -> object:
    if isinstance(value, float | np.floating):
        return float(f"{value:.12g}")
    return str(value)


def _pair_units(info: pd.DataFrame, knob: str, known: list[str], identity: list[str]):
    """The matched pairs of ``knob`` (a list of dicts) and the sentence that describes them."""
    have = info[info[knob].notna()]
    if have.empty:
        return [], f"{knob} is not recorded in these results: its effect cannot be measured."
    if have[knob].nunique() < 2:
        value = have[knob].iloc[0]
        return [], f"{knob} takes one value ({value:g}) in these results: no effect to see."
    complete = have.dropna(subset=known)
    left_out = len(have) - len(complete)
    groups = _groups(complete, knob, known)
    units = []
    for key, part in groups:
        levels = sorted(set(part[knob].map(_key)))
        for low, high in combinations(levels, 2):
            a = part[part[knob].map(_key) == low]
            b = part[part[knob].map(_key) == high]
            units.append(
                dict(
                    match=dict(zip(known, key, strict=True)),
                    low=low,
                    high=high,
                    a=sorted(a["model_key"]),
                    b=sorted(b["model_key"]),
                    us=float(b["upstream_accuracy"].mean() - a["upstream_accuracy"].mean()),
                )
            )
    matched = ", ".join(known) or "nothing (no identity column is recorded)"
    if not units:
        return [], _no_pairs(complete, knob, known)
    n_ckpt = len({m for u in units for m in (*u["a"], *u["b"])})
    replicated = sum(len(u["a"]) > 1 or len(u["b"]) > 1 for u in units)
    text = f"{knob}: {len(units)} matched pair(s) of {n_ckpt} checkpoints, equal in {matched}"
    unknown = [c for c in identity if c not in known]
    text += f" ({', '.join(unknown)} not recorded, so not matched)." if unknown else "."
    if replicated:
        text += (
            f" In {replicated} pair(s) several checkpoints share one side (nothing recorded "
            "tells them apart, e.g. the pre-training seed): their mean is used."
        )
    if left_out:
        text += f" {left_out} checkpoint(s) with an unknown matched column were left out."
    return units, text


def _groups(frame: pd.DataFrame, knob: str, known: list[str]):
    if not known:
        return [((), frame)] if frame[knob].nunique() > 1 else []
    keyed = frame.assign(**{f"_k{i}": frame[c].map(_key) for i, c in enumerate(known)})
    cols = [f"_k{i}" for i in range(len(known))]
    out = []
    for _, part in keyed.groupby(cols, sort=True):
        if part[knob].nunique() > 1:
            values = tuple(part[c].iloc[0] for c in known)
            out.append((values, part))
    return out


def _no_pairs(frame: pd.DataFrame, knob: str, known: list[str]) -> str:
    """Why there are no matched pairs: the columns whose changes always come with the knob's."""
    confounders = [c for c in known if _groups(frame, knob, [k for k in known if k != c])]
    if confounders:
        what = ", ".join(confounders)
        why = f"every change of {knob} comes with a change of {what}"
    else:
        what = ", ".join(known)
        why = f"{knob} changes only together with several of {what}"
    return (
        f"no two checkpoints differ only in {knob}: the knob effect cannot be separated from "
        f"{what} ({why}); per-value means would show the mixture, so none are shown. Train "
        f"checkpoints that differ in {knob} alone to measure it."
    )


def _pairs_frame(units: list[dict], knob: str, known: list[str]) -> pd.DataFrame:
    rows = []
    for u in units:
        row = dict(knob=knob, low=u["low"], high=u["high"], **u["match"])
        row.update(
            low_checkpoints=";".join(u["a"]), high_checkpoints=";".join(u["b"]), d_us=u["us"]
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _effects(units: list[dict], values: pd.DataFrame, knob: str, level: float) -> pd.DataFrame:
    """Mean paired differences with t-intervals per (group, low, high)."""
    measures = ["ds", "ds_best", "best_depth"]
    indexed = values.set_index("model_key")
    diffs = []
    for u in units:
        a = indexed.loc[indexed.index.isin(u["a"])].groupby(GROUP, observed=True)[measures].mean()
        b = indexed.loc[indexed.index.isin(u["b"])].groupby(GROUP, observed=True)[measures].mean()
        d = (b - a).dropna(how="all").reset_index()
        d = d.rename(columns={m: f"d_{m}" for m in measures})
        d["d_us"] = u["us"]
        d["low"], d["high"] = u["low"], u["high"]
        d["n_ckpt"] = len(u["a"]) + len(u["b"])
        diffs.append(d)
    frame = pd.concat(diffs, ignore_index=True)
    rows = []
    for key, part in frame.groupby([*GROUP, "low", "high"], sort=True):
        row = dict(zip([*GROUP, "low", "high"], key, strict=True))
        row.update(knob=knob, pairs=len(part), checkpoints=int(part["n_ckpt"].sum()))
        for m in MEASURES:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = t_interval(part[m].to_numpy(float), level)
        rows.append(row)
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def t_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences ``diffs`` (n,) and its two-sided t-interval at ``level``.

    Returns (mean, lo, hi); NaN where no difference is known, lo = hi = NaN from one pair.
    """
    diffs = diffs[np.isfinite(diffs)]
    n = len(diffs)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(diffs.mean())
    if n == 1:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def _identity_note(compared: pd.DataFrame, match: Sequence[str]) -> str:
    """What pairs are matched on; where a pre-training identity column is unknown for some of
    the ``compared`` checkpoints (one row each), which, for how many, and that pairs are not
    matched on it, so may differ in it."""
    also = f" (also matched on {', '.join(match)})" if match else ""
    unknown = {c: int(compared[c].isna().sum()) for c in PRETRAIN_IDENTITY}
    unknown = {c: n for c, n in unknown.items() if n}
    if not unknown:
        return (
            "Pairs are equal in the upstream task, params, data_fraction, epochs, the other head "
            "knob and the pre-training architecture, seed and schedule (pretrain_model, "
            f"pretrain_seed, pretrain_schedule) where the results record them{also}."
        )
    matched = [c for c in PRETRAIN_IDENTITY if c not in unknown]
    total = len(compared)
    if len(set(unknown.values())) == 1:
        missing = (
            f"{_join([IDENTITY_WORDS[c] for c in unknown])} for {next(iter(unknown.values()))}"
        )
    else:
        missing = _join([f"{IDENTITY_WORDS[c]} for {n}" for c, n in unknown.items()])
    one = len(unknown) == 1
    return (
        "Pairs are equal in the upstream task, params, data_fraction, epochs and the other head "
        "knob" + "".join(f", {c}" for c in matched) + f" where the results record them{also}; "
        f"the results do not record {missing} of the {total} checkpoint(s) compared "
        "(checkpoints not made by `layerprobe pretrain` have none; parts probed before results "
        "schema 3 get them when probed again with --force), so pairs are not matched on "
        f"{'it' if one else 'those'} and a pair may also differ in {'it' if one else 'them'}"
        + (" (params stands in for the architecture)." if "pretrain_model" in unknown else ".")
    )


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _depth_notes(effects: list[pd.DataFrame]) -> list[str]:
    """Per knob comparison: on which tasks the best depth moves (interval excludes 0)."""
    notes = []
    for frame in effects:
        for (knob, low, high, shots), part in frame.groupby(
            ["knob", "low", "high", "shots"], sort=True
        ):
            has = part[np.isfinite(part["d_best_depth_lo"].to_numpy(float))]
            if has.empty:
                notes.append(
                    f"{knob} {low:g} → {high:g}, shots {shots}: one pair per task, so no "
                    "interval; whether the best depth moves is not decided."
                )
                continue
            moves = has[(has["d_best_depth_lo"] > 0) | (has["d_best_depth_hi"] < 0)]
            names = ", ".join(
                f"{t} ({d:+.2f})" for t, d in zip(moves["task"], moves["d_best_depth"], strict=True)
            )
            notes.append(
                f"{knob} {low:g} → {high:g}, shots {shots}: the best layer's depth moves "
                f"(interval excludes 0) on {len(moves)} of {len(has)} task(s)"
                + (f": {names}." if len(moves) else ".")
            )
    return notes


READ_COLUMNS = (*POINT_COLUMNS, *PRETRAIN_IDENTITY)


def read_for_pairs(
    results: str | Path,
    *,
    match: Sequence[str] = (),
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    row_cache: bool = True,
) -> pd.DataFrame:
    """The selected-λ rows :func:`knob_pairs` needs, from a results folder or an external table
    (with its ``match`` columns; an unknown one is a :class:`ConfigError`); ``row_cache`` as for
    :func:`~layerprobe.results.read.read_selected`."""
    from layerprobe.results.external import extra_columns, is_table
    from layerprobe.results.read import ANALYSIS_SCHEMA, read_selected

    extra = extra_columns(results) if is_table(results) else []
    check_match(match, [*ANALYSIS_SCHEMA.names, *extra])
    columns = list(dict.fromkeys([*READ_COLUMNS, *match]))
    return read_selected(
        results, columns=columns, skip_bad=skip_bad, warn=warn, row_cache=row_cache
    )


def check_match(match: Sequence[str], available: Sequence[str]) -> None:
    """Raise :class:`ConfigError` when a ``--match`` column is not one of ``available``."""
    for name in match:
        if name not in set(available):
            raise ConfigError(
                f"--match {name!r}: no such column in the results; use one of "
                f"{', '.join(sorted(map(str, available)))}"
            )


def format_pairs(result: KnobPairs, fmt: str = "table") -> str:
    """The notes and the effects as ``table`` (mean [lo, hi] cells), ``markdown``, ``csv`` or
    ``json`` (csv: the effects only, every column)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    effects = result.effects
    if fmt == "csv":
        return effects.to_csv(index=False, float_format="%.6g")
    if fmt == "json":
        payload = dict(
            notes=result.notes,
            matched_on=result.matched_on,
            effects=json.loads(effects.to_json(orient="records")),
            pairs=json.loads(result.pairs.to_json(orient="records")) if len(result.pairs) else [],
        )
        return json.dumps(payload, indent=1) + "\n"
    lines = [*result.notes, ""]
    if len(effects):
        shown = display(effects)
        lines.append(_markdown(shown) if fmt == "markdown" else shown.to_string(index=False))
    return "\n".join(lines) + "\n"


def display(effects: pd.DataFrame) -> pd.DataFrame:
    """The effects with each measure as one ``mean [lo, hi]`` cell (for tables and the report)."""
    out = effects[[*GROUP, "knob", "low", "high", "pairs"]].copy()
    for m, label in MEASURES.items():
        out[f"Δ {label}"] = [
            _cell(v, lo, hi)
            for v, lo, hi in zip(effects[m], effects[f"{m}_lo"], effects[f"{m}_hi"], strict=True)
        ]
    return out


def _cell(value: float, lo: float, hi: float) -> str:
    if not np.isfinite(value):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:+.3f} (1 pair)"
    return f"{value:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])
