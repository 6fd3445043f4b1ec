"""``ExtractConfig``: how to extract, one typed config with one set of defaults.

The Python API (``extract(model, task, config)``), the CLI and job files all build one of
these; it validates itself, so a bad value fails before any model is built or image read.
Which model to run is a :class:`~layerprobe.backbones.ModelConfig` of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from layerprobe.backbones.preprocess import check_resize
from layerprobe.errors import ConfigError, did_you_mean
from layerprobe.extract.features import AMP, DTYPES

DEFAULT_CACHE_DIR = "cache"
MODEL_OPTIONS = ("checkpoint", "model_args", "pretrained", "image_size", "mean", "std")
MAX_BATCH_SIZE = 1 << 16  # beyond this a batch of even 32 px images overflows index arithmetic


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

    cache_dir: str | Path = DEFAULT_CACHE_DIR
    splits: str | list[str] = "all"
    layers: str | list[str] = "all"
    pool: str = "auto"
    resize: str | None = None
    dtype: str = "float16"
    amp: str = "none"
    batch_size: int = 64
    device: str = "auto"
    workers: int = 0
    data_root: str | Path | None = None
    force: bool = False
    skip_bad: bool = False
    quiet: bool = False
    content_hash: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; use one of {', '.join(DTYPES)}")
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
