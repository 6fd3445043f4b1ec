"""layerprobe: how good is every layer of a vision backbone for every downstream task."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("layerprobe")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
