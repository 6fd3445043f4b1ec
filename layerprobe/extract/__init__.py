"""The extract room: run a backbone over task splits once and cache every layer's pooled features.

``extract(...)`` writes ``<cache>/<model_key>/<task>/<split>.h5`` (see :mod:`.cache` for the
format); ``read_info``, ``read_arrays`` and ``find_caches`` read them back.
"""

from layerprobe.extract.cache import (
    FORMAT_VERSION,
    CacheInfo,
    cache_path,
    find_caches,
    partial_path,
    read_arrays,
    read_info,
)
from layerprobe.extract.distributed import is_main_process
from layerprobe.extract.run import DEFAULT_CACHE_DIR, extract

__all__ = [
    "DEFAULT_CACHE_DIR",
    "FORMAT_VERSION",
    "CacheInfo",
    "cache_path",
    "extract",
    "find_caches",
    "is_main_process",
    "partial_path",
    "read_arrays",
    "read_info",
]
