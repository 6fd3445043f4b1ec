"""``ExtractConfig``: how to extract, one typed config with one set of defaults.

The Python API (``extract(model, task, config)``), the CLI and job files all build one of
these; it validates itself, so a bad value fails before any model is built or image read.
Which model to run is a :class:`~layerprobe.backbones.ModelConfig` of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from layerprobe.backbones.preprocess import RESIZE_MODES, check_resize
from layerprobe.errors import ConfigError, did_you_mean
from layerprobe.layers import LAYERS_HELP
from layerprobe.options import option, whole_number
from layerprobe.runtime.devices import DEVICES

DEFAULT_CACHE_DIR = "cache"
MODEL_OPTIONS = ("checkpoint", "model_args", "pretrained", "image_size", "mean", "std")
MAX_BATCH_SIZE = 1 << 16  # beyond this a batch of even 32 px images overflows index arithmetic
FEATURE_DTYPES = ("float16", "float32")  # the stored feature dtype
AMP = ("none", "bf16")  # autocast of the forward pass


@dataclass
class ExtractConfig:
    """How to extract features.

    Attributes
    ----------
    cache_dir : root of the cache; files go to ``<cache_dir>/<model_key>/<task>/<split>.h5``.
    splits : ``"all"`` (every split of the task), a split name, comma-separated names, or a list.
    layers : a layer selection (:mod:`layerprobe.layers`): ``"all"``, names, globs.
    pool : ``auto``, ``cls``, ``mean``, ``cls+mean`` or ``gap``.
    resize : ``crop``, ``squash``, ``squash-crop`` or ``border``; None = the task's reference
        protocol where it has one (VTAB and non-square datasets squash), else the model's own.
    dtype : ``float16`` or ``float32``, the stored feature dtype.
    amp : ``bf16`` runs the forward under bfloat16 autocast (CUDA), ``none`` in full precision.
    batch_size : images per forward pass.
    device : ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    workers : DataLoader worker processes decoding images (0 = in this process).
    data_root : where the task's data lives (default ``$LAYERPROBE_DATA``).
    force : extract again even when a complete cache exists.
    skip_bad : leave out unreadable images (recorded in ``skipped_items``) instead of stopping.
    quiet : no progress bar and no messages (warnings still print).
    content_hash : identify a folder task's images by a hash of their bytes instead of their
        names, sizes and modification times (reads every image once more).
    """

    cache_dir: str | Path = option(DEFAULT_CACHE_DIR, help="cache folder", cli=False)
    splits: str | list[str] = option("all", help="splits to extract", cli=False)
    layers: str | list[str] = option(
        "all", help=LAYERS_HELP, metavar="all|NAMES|GLOBS", show_default=""
    )
    pool: str = option("auto", help="pooling: auto, cls, mean, cls+mean or gap")
    resize: str | None = option(
        None,
        help="how images become square: squash (whole image, VTAB), squash-crop (big_vision "
        "few-shot), crop (keep aspect, centre crop), border",
        choices=tuple(RESIZE_MODES),
        show_default="the task's protocol where it has one (VTAB and non-square datasets "
        "squash), else the model's own",
    )
    dtype: str = option("float16", help="stored feature dtype", choices=FEATURE_DTYPES)
    amp: str = option("none", help="bf16 autocast for the forward pass (CUDA)", choices=AMP)
    batch_size: int = option(64, help="images per forward pass", type=whole_number(), metavar="N")
    device: str = option("auto", help="where the model runs", choices=DEVICES)
    workers: int = option(0, help="DataLoader worker processes", type=whole_number(), metavar="N")
    data_root: str | Path | None = option(
        None, help="where the task data lives", metavar="DIR", show_default="$LAYERPROBE_DATA"
    )
    force: bool = option(False, help="extract again even if a complete cache exists")
    skip_bad: bool = option(
        False,
        help="leave out unreadable images (recorded in the skipped_items attribute) instead of "
        "stopping",
    )
    quiet: bool = option(False, help="no progress bars", short="-q")
    content_hash: bool = option(
        False,
        help="identify folder: images by a hash of their bytes (default: names, sizes, mtimes)",
    )

    def __post_init__(self) -> None:
        if self.dtype not in FEATURE_DTYPES:
            raise ConfigError(
                f"unknown dtype {self.dtype!r}; use one of {', '.join(FEATURE_DTYPES)}"
            )
        if self.amp not in AMP:
            raise ConfigError(f"unknown amp mode {self.amp!r}; use one of {', '.join(AMP)}")
        check_resize(self.resize)
        self.batch_size = _count(self.batch_size, "batch size", 1, MAX_BATCH_SIZE)
        self.workers = _count(self.workers, "workers", 0, 1024)
        self.cache_dir = Path(self.cache_dir)

    @classmethod
    def build(cls, config: ExtractConfig | None = None, **overrides) -> ExtractConfig:
        """``config`` (or the defaults) with some fields replaced; unknown names are an error."""
        names = [f.name for f in fields(cls)]
        for key in overrides:
            if key in MODEL_OPTIONS:
                raise ConfigError(
                    f"{key!r} is a model option, not an extraction option; give it in "
                    "ModelConfig(spec, ...) (model constructor arguments: ModelConfig.model_args)"
                )
            if key not in names:
                raise ConfigError(
                    f"unknown extraction option {key!r}.{did_you_mean(key, names)} Options: "
                    f"{', '.join(names)} (model constructor arguments go in ModelConfig.model_args)"
                )
        base = {f.name: getattr(config, f.name) for f in fields(cls)} if config else {}
        return cls(**(base | overrides))


def _count(value, what: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"{what} must be a whole number, got {value!r}") from err
    if number != value or not low <= number <= high:
        raise ConfigError(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return number
