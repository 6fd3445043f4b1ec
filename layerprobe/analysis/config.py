"""The analysis options: one home of their defaults, choices, help and checks.

:class:`AnalysisConfig` holds what the saturation fit computes (shots, layer, points, hold-out,
bootstrap, form, seed, grouping, the widest interval that still determines e_IR); it is what
:func:`~layerprobe.analysis.fit.fit_saturation` and
:func:`~layerprobe.analysis.report.write_report` take. The per-command configs add what one
command reads and writes: :class:`FitConfig` (``layerprobe fit``), :class:`ReportConfig`
(``layerprobe report``), :class:`SimilarityConfig` (``layerprobe similarity``) and
:class:`ShowConfig` (``layerprobe results show``) and :class:`KnobsConfig` (``layerprobe results
knobs``). Each field is a command-line option
(:mod:`layerprobe.options`): the commands generate their options from these fields and build the
config back from the parsed arguments, so the CLI and the Python API share one default each.

The module imports no numerical library, so building the command line stays quick.

Example
-------
>>> config = AnalysisConfig(points="all", holdout_top=5)
>>> (config.layer, config.points, config.holdout_top, config.form)
('pre_logits', 'all', 5.0, 'eq1')
>>> AnalysisConfig.build(config, form="power").form
'power'
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from layerprobe.errors import ConfigError, check_memory, did_you_mean
from layerprobe.options import check_choices, option, parse_int_list, whole_number
from layerprobe.runtime.devices import DEVICES

POINTS = ("hull", "all")  # fit the rising part of the upper hull, or every point
FORMS = ("eq1", "power")  # the names of :data:`layerprobe.analysis.fit.FORMS`
MAX_WIDTH = 0.2  # an e_IR interval wider than this does not determine e_IR
MIN_HELDOUT = 3  # the prediction error rests on at least this many held-out frontier points
# A lower bound of one resample's memory: two fit sets of at least 3 (US, DS) points (arrays,
# tuple) and its parameters, held until every resample is solved.
BOOTSTRAP_BYTES = 600
FIT_FORMATS = ("table", "markdown", "csv", "json")
SHOW_FORMATS = ("text", "csv", "markdown", "json")
PAIRS_FORMATS = ("table", "markdown", "csv", "json")
HEAD_KNOBS = ("head_wd", "head_lr")  # the knobs matched pairs of checkpoints can differ in
SIMILARITY_FORMATS = ("table", "csv", "json")
ROWS = 2000  # images per CKA map (subsampled deterministically above this)

RESULTS_HELP = (
    "results store folder, or a .csv/.parquet table with columns model, upstream_accuracy, "
    "task, test_accuracy (fractions in [0, 1]; optional: shots, layer, depth, seed, knobs, "
    "a family column; see docs/external.md)"
)


def _shots() -> Any:
    return option(None, help="only these shot counts", type=parse_int_list, metavar="K,…")


def _quiet() -> Any:
    return option(False, help="no progress bars", short="-q")


@dataclass(kw_only=True)
class ReadOptions:
    """Where a command reads the results store, and what it does with bad part files."""

    results: str | Path = option(help=RESULTS_HELP, metavar="DIR|TABLE")
    skip_bad: bool = option(
        False,
        help="leave out bad result part files (each named in a warning) instead of stopping",
    )


@dataclass(kw_only=True)
class RowCacheOption:
    """Whether a command that reads the selected rows may use the cache beside the store."""

    no_row_cache: bool = option(
        False,
        help="read every result part file instead of the selected-rows cache beside the store "
        "(<results>/.layerprobe/selected-rows.cache, kept up to date by each read)",
    )


@dataclass(kw_only=True)
class AnalysisConfig(RowCacheOption):
    """What the saturation fit (and the report's fit) computes.

    Parameters
    ----------
    shots : only these shot counts (None: all).
    layer : DS accuracy at ``pre_logits``, the ``best`` layer per checkpoint, or a named layer.
    points : fit the rising part of the upper ``hull`` of the (US, DS) points, or ``all``.
    holdout_top : checkpoints of highest US accuracy held out for the prediction error: a
        fraction in [0, 1) (at least :data:`MIN_HELDOUT` checkpoints), a count ≥
        :data:`MIN_HELDOUT`, or 0 (none).
    bootstrap : percentile-bootstrap resamples (0: none); uncalibrated, beside the profile
        intervals.
    form : ``eq1`` (k · e_US^α + e_IR) or ``power`` (k · e_US^α); the Python API also takes a
        :class:`layerprobe.analysis.fit.Form`.
    seed : seed of the bootstrap (and of the report's layer-saturation draws).
    group_by : a checkpoint column (e.g. ``model``): each of its values gets its own hull.
    max_width : the widest e_IR interval that still determines e_IR (status ``wide_interval``).
    no_row_cache : read every part file, not the selected-rows cache beside the store
        (:mod:`layerprobe.results.rowcache`; same rows, the cache only saves time).

    Raises :class:`~layerprobe.errors.ConfigError` (at construction) for a value the analysis
    refuses, with the same one-line messages the CLI prints.
    """

    shots: list[int] | None = _shots()
    layer: str = option(
        "pre_logits",
        metavar="NAME",
        help="DS accuracy at pre_logits, the best layer per checkpoint (best), or a layer",
    )
    points: str = option(
        "hull",
        choices=POINTS,
        help="fit the rising part of the upper hull of the (US, DS) points (the paper; the "
        "falling tail after the best DS point is left out) or all points",
    )
    holdout_top: float = option(
        0.1,
        flag="--holdout",
        short="--holdout-top",
        type=float,
        metavar="N|F",
        help="checkpoints of highest US accuracy held out for the prediction error: a count "
        f"(≥ {MIN_HELDOUT}) or a fraction (at least {MIN_HELDOUT} checkpoints); 0: none",
    )
    bootstrap: int = option(
        0,
        type=whole_number(),
        metavar="N",
        show_default="0: none",
        help="also percentile-bootstrap intervals from N resamples, in *_boot_lo/_hi columns; "
        "uncalibrated (they covered the truth 0-87%% of the time on known curves): the "
        "profile-likelihood intervals are the ones to read",
    )
    form: Any = option(
        "eq1",
        choices=FORMS,
        help="eq1: k·e_US^α + e_IR; power: k·e_US^α (no saturation)",
    )
    seed: int = option(0, type=whole_number(), show_default="0", help="seed of the bootstrap")
    group_by: str | None = option(
        None,
        metavar="COLUMN",
        help="fit each value of this checkpoint column (e.g. model, or an architecture family "
        "column) on its own hull",
    )
    max_width: float = option(
        MAX_WIDTH,
        type=float,
        metavar="W",
        help="an e_IR interval wider than this does not determine e_IR (status wide_interval)",
    )

    def __post_init__(self) -> None:
        # One type whichever way the config was built (the CLI parses a float): `holdout 3` and
        # `holdout 3.0` must give the same fit table.
        try:
            self.holdout_top = float(self.holdout_top)
        except (TypeError, ValueError):
            raise ConfigError(
                f"--holdout {self.holdout_top!r} is not a number; e.g. 0.1 or 5"
            ) from None
        if isinstance(self.form, str):
            check_choices(self)
        else:  # a Form object (Python API): the other fields with choices still hold
            check_choices(replace(self, form=FORMS[0]))
        check_options(self.points, self.holdout_top, self.bootstrap)
        if not 0 < self.max_width <= 1:
            raise ConfigError(f"--max-width {self.max_width:g} is not in (0, 1]; e.g. 0.2")

    @classmethod
    def build(cls, config: AnalysisConfig | None = None, **options: Any) -> AnalysisConfig:
        """``config`` (default: ``cls()``) with the fields in ``options`` replaced.

        An unknown name is a :class:`~layerprobe.errors.ConfigError` that lists the fields.
        """
        names = [f.name for f in fields(config if config is not None else cls)]
        for key in options:
            if key not in names:
                raise ConfigError(
                    f"unknown analysis option {key!r}.{did_you_mean(key, names)} Options: "
                    f"{', '.join(names)}"
                )
        if config is None:
            return cls(**options)
        return replace(config, **options) if options else config

    def settings(self) -> dict[str, Any]:
        """The options a report lists under its settings (in this order)."""
        return {
            "layer": self.layer,
            "points": self.points,
            "holdout_top": self.holdout_top,
            "bootstrap": self.bootstrap,
            "form": self.form,
        }


def check_options(points: str, holdout_top: float, bootstrap: int) -> None:
    """Refuse unknown ``points``, a ``holdout_top`` outside [0, 1), and a ``bootstrap`` below 0
    or too large for the memory available (:class:`AnalysisConfig` calls it)."""
    if points not in POINTS:
        raise ConfigError(f"unknown --points {points!r}; use hull or all")
    if not (
        0 <= holdout_top < 1 or (holdout_top >= MIN_HELDOUT and holdout_top == int(holdout_top))
    ):
        raise ConfigError(
            f"--holdout {holdout_top:g} is neither a fraction in [0, 1) nor a count of at least "
            f"{MIN_HELDOUT} checkpoints; e.g. 0.1 or 5"
        )
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap {bootstrap} is negative; give 0 (none) or more resamples")
    check_memory(
        bootstrap * BOOTSTRAP_BYTES,
        f"--bootstrap {bootstrap}",
        "give fewer resamples (100 to 1000 give stable 95 % intervals)",
    )


def default_out(source: str | Path) -> Path:
    """The default output folder of a command reading ``source``: ``analysis/`` next to it."""
    return Path(source).resolve().parent / "analysis"


@dataclass(kw_only=True)
class FitConfig(AnalysisConfig, ReadOptions):
    """``layerprobe fit``: the analysis options, the store to read, the table to print and the
    folder for ``fits.parquet`` (None: :func:`default_out` of the results)."""

    format: str = option(
        "table",
        choices=FIT_FORMATS,
        help="output format (csv and json: every column, with intervals as *_lo / *_hi)",
    )
    out: str | Path | None = option(
        None,
        metavar="DIR",
        help="folder for fits.parquet (default: analysis/ next to the results folder)",
    )

    def out_dir(self) -> Path:
        """Where ``fits.parquet`` goes."""
        return Path(self.out) if self.out is not None else default_out(self.results)


# The analysis options `layerprobe report` does not offer (the report fits one hull per task
# with the default interval width).
REPORT_EXCLUDES = ("group_by", "max_width")


@dataclass(kw_only=True)
class ReportConfig(AnalysisConfig, ReadOptions):
    """``layerprobe report``: the analysis options, the store, the output folder, SVG copies,
    the shot counts drawn."""

    out: str | Path = option(help="output folder", metavar="DIR")
    svg: bool = option(False, help="also write an SVG copy of every figure to plots/")
    all_shots: bool = option(
        False,
        help="draw the per-task saturation and layer figures at every shot count (default: at "
        "the largest few-shot count only)",
    )
    quiet: bool = _quiet()


@dataclass(kw_only=True)
class SimilarityConfig:
    """``layerprobe similarity``: which cached checkpoints, tasks and images to compare."""

    cache: str | Path = option(help="feature cache folder", metavar="DIR")
    task: list[str] | None = option(
        None, action="extend", nargs="+", metavar="T", help="only these tasks (default all)"
    )
    model: list[str] | None = option(
        None,
        action="extend",
        nargs="+",
        metavar="M",
        help="only these model keys or model names (default all)",
    )
    split: str = option("test", help="which split's images")
    rows: int = option(
        ROWS,
        type=int,
        metavar="N",
        help="at most N images per map, subsampled deterministically",
    )
    seed: int = option(0, type=int, show_default="0", help="seed of the subsample")
    within: bool = option(
        False, help="only the maps within each checkpoint (no CKA across checkpoints)"
    )
    device: str = option("cpu", choices=DEVICES, help="where the CKA is computed")
    format: str = option("table", choices=SIMILARITY_FORMATS, help="output format")
    out: str | Path | None = option(
        None,
        metavar="DIR",
        help="folder for similarity.parquet (default: analysis/ next to the cache folder)",
    )
    quiet: bool = _quiet()

    def __post_init__(self) -> None:
        check_choices(self)

    def out_dir(self) -> Path:
        """Where ``similarity.parquet`` goes."""
        return Path(self.out) if self.out is not None else default_out(self.cache)


@dataclass(kw_only=True)
class ShowConfig(ReadOptions):
    """``layerprobe results show``: which rows to summarise layer by layer, and how to print."""

    task: list[str] | None = option(
        None, action="append", metavar="T", help="only this task (repeatable)"
    )
    model: list[str] | None = option(
        None, action="append", metavar="M", help="only this model name or model key (repeatable)"
    )
    shots: list[int] | None = _shots()
    format: str = option("text", choices=SHOW_FORMATS, help="output format")

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass(kw_only=True)
class KnobsConfig(RowCacheOption, ReadOptions):
    """``layerprobe results knobs``: which knobs to pair checkpoints on, and how to print."""

    knob: list[str] | None = option(
        None,
        action="append",
        choices=HEAD_KNOBS,
        help="only this knob (repeatable; default both)",
    )
    match: list[str] = option(
        default_factory=list,
        action="append",
        metavar="COLUMN",
        help="also require pairs to agree on this checkpoint column (repeatable; e.g. an "
        "architecture or pre-training seed column of an external table)",
    )
    shots: list[int] | None = _shots()
    level: float = option(0.95, type=float, help="coverage of the intervals")
    format: str = option(
        "table",
        choices=PAIRS_FORMATS,
        help="output format (csv: the effects, every column; json: notes, effects and pairs)",
    )

    def __post_init__(self) -> None:
        check_choices(self)

    def knobs(self) -> tuple[str, ...]:
        """The knobs to pair on, each once, in the order given (default: every head knob)."""
        return tuple(dict.fromkeys(self.knob or HEAD_KNOBS))
