"""The extract room: run a backbone over task splits once and cache every layer's pooled features.

``extract(...)`` writes ``<cache>/<model_key>/<task>/<split>.h5`` (see :mod:`.cache` for the
format); ``find_caches``, ``read_info``, ``open_cache`` and ``read_arrays`` read them back (the
one reader of the format: no module outside ``extract/`` opens HDF5).

>>> from layerprobe.extract import ExtractConfig, extract, read_arrays
>>> config = ExtractConfig(cache_dir="cache", layers="blocks.*,pre_logits", batch_size=64)
>>> paths = extract("vit_small_patch16_224", "folder:/data/pets", config)
>>> labels, index, feats = read_arrays(paths[0])  # feats: {layer: (N, D) float16}

The same from the shell: ``layerprobe extract --model vit_small_patch16_224 --task
folder:/data/pets --layers 'blocks.*,pre_logits' --cache cache``; run it under
``torchrun --nproc-per-node N -m layerprobe extract ...`` to split the rows across processes.
"""

from layerprobe.extract.cache import (
    FORMAT_VERSION,
    CacheInfo,
    CacheReader,
    cache_path,
    find_caches,
    open_cache,
    partial_path,
    read_arrays,
    read_info,
)
from layerprobe.runtime.lazy import lazy_names

# `extract` pulls in torch; readers of the cache (probe, results) should not pay for that.
_LAZY = {
    "extract": "layerprobe.extract.run",
    "ExtractConfig": "layerprobe.extract.config",
    "DEFAULT_CACHE_DIR": "layerprobe.extract.config",
    "is_main_process": "layerprobe.extract.distributed",
}

__getattr__ = lazy_names(__name__, _LAZY)


__all__ = [
    "DEFAULT_CACHE_DIR",
    "FORMAT_VERSION",
    "CacheInfo",
    "CacheReader",
    "ExtractConfig",
    "cache_path",
    "extract",
    "find_caches",
    "is_main_process",
    "open_cache",
    "partial_path",
    "read_arrays",
    "read_info",
]
