"""Settings of the built-in suite: image size, seed and on-disk cache folder.

``get_task("builtin/...")`` takes no arguments, so the registered tasks read these
settings each time a split is loaded. Precedence: :func:`configure` > environment
variables (``LAYERPROBE_BUILTIN_SIZE``, ``LAYERPROBE_BUILTIN_SEED``,
``LAYERPROBE_BUILTIN_CACHE``: a folder, or ``1`` for ``~/.cache/layerprobe/builtin``)
> defaults (32 px, seed 0, no disk cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from layerprobe.errors import ConfigError

DEFAULT_IMAGE_SIZE = 32
DEFAULT_SEED = 0
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
_UNSET = object()
_overrides: dict[str, object] = {}


@dataclass(frozen=True)
class BuiltinSettings:
    """The settings in force: ``image_size`` (px), ``seed``, ``cache_dir`` (None = memory only)."""

    image_size: int = DEFAULT_IMAGE_SIZE
    seed: int = DEFAULT_SEED
    cache_dir: Path | None = None


def _whole_number(value: object) -> int | None:
    """``value`` as an int when it is one or spells one exactly (``"32"``, not ``"32.5"`` or ``3.0``)."""
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return None
    return number if str(value).strip() == str(number) or isinstance(value, int) else None


def check_image_size(value: object, where: str = "image_size") -> int:
    """An int in [8, 1024], else :class:`ConfigError` naming ``where``."""
    size = _whole_number(value)
    if size is None or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise ConfigError(
            f"{where} must be a whole number of pixels from {MIN_IMAGE_SIZE} to "
            f"{MAX_IMAGE_SIZE}, got {value!r}"
        )
    return size


def check_seed(value: object, where: str = "seed") -> int:
    """A non-negative int, else :class:`ConfigError` naming ``where``."""
    seed = _whole_number(value)
    if seed is None or seed < 0 or isinstance(value, bool):
        raise ConfigError(f"{where} must be a whole number >= 0, got {value!r}")
    return seed


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/layerprobe/builtin``, else ``~/.cache/layerprobe/builtin``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "layerprobe" / "builtin"


def parse_cache_dir(raw: str) -> Path | None:
    """``""``, ``0``, ``off`` -> no disk cache; ``1``, ``on`` -> :func:`default_cache_dir`; else a folder."""
    raw = raw.strip()
    if raw.lower() in ("", "0", "off", "no", "false"):
        return None
    if raw.lower() in ("1", "on", "yes", "true", "default"):
        return default_cache_dir()
    return Path(raw).expanduser()


def _from_env(var: str, check):
    raw = os.environ.get(var, "").strip()
    return check(raw, f"${var}") if raw else None


def settings() -> BuiltinSettings:
    """The settings in force now (configure() beats the environment, which beats defaults)."""
    size = _overrides.get("image_size")
    if size is None:
        size = _from_env("LAYERPROBE_BUILTIN_SIZE", check_image_size) or DEFAULT_IMAGE_SIZE
    seed = _overrides.get("seed")
    if seed is None:
        env_seed = _from_env("LAYERPROBE_BUILTIN_SEED", check_seed)
        seed = DEFAULT_SEED if env_seed is None else env_seed
    cache_dir = _overrides.get("cache_dir", _UNSET)
    if cache_dir is _UNSET:
        cache_dir = parse_cache_dir(os.environ.get("LAYERPROBE_BUILTIN_CACHE", ""))
    return BuiltinSettings(int(size), int(seed), cache_dir)  # type: ignore[arg-type]


def configure(
    image_size: int | None = None,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None | object = _UNSET,
) -> BuiltinSettings:
    """Change the settings the registered ``builtin/*`` tasks use; returns the new settings.

    Parameters
    ----------
    image_size : side of the square images in pixels (8..1024); None keeps the current one.
    seed : generation seed (>= 0); None keeps the current one.
    cache_dir : folder for the on-disk ``.npy`` cache (created on first use); None turns
        the disk cache off; leaving it out keeps the current choice.
    """
    if image_size is not None:
        _overrides["image_size"] = check_image_size(image_size)
    if seed is not None:
        _overrides["seed"] = check_seed(seed)
    if cache_dir is not _UNSET:
        _overrides["cache_dir"] = None if cache_dir is None else Path(cache_dir).expanduser()  # type: ignore[arg-type]
    return settings()


def reset() -> None:
    """Forget every :func:`configure` call (back to the environment and defaults)."""
    _overrides.clear()
