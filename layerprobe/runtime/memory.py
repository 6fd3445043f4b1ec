"""Arrow's memory pool for the commands that read the store in bulk.

pyarrow's default pool (mimalloc) keeps memory freed by one large read to reuse it, so a
process's resident size stays near its highest point: at the paper's scale the Arrow columns
freed while rows become a DataFrame (about 1 GiB) stay resident under every later step. With
jemalloc and a decay time of 0, freed pages go back to the system at once, and the peak is
what is live (``fit --layer best`` at 120,000 parts: 2.7 -> 2.2 GiB, at the same speed).

The decay time must be in jemalloc's configuration when jemalloc starts: Arrow builds it with
a decay of one second, and ``pa.jemalloc_set_decay_ms`` changes only arenas made after the
call, not the one the main thread already uses — there freed pages stayed resident for a
second, long enough to be counted in the peak (``report`` at the paper's scale: 2.05 GiB with
the call alone, 1.79 GiB with the configuration).
"""

from __future__ import annotations

import os

# Arrow's bundled jemalloc reads its options from this variable when it starts, as pyarrow is
# imported; they are added to the ones Arrow builds it with.
JEMALLOC_CONF = "JE_ARROW_MALLOC_CONF"
RETURN_AT_ONCE = "dirty_decay_ms:0,muzzy_decay_ms:0"


def return_freed_memory() -> bool:
    """Make Arrow's default pool jemalloc with freed memory returned at once, where this
    pyarrow has jemalloc (Linux and macOS wheels do); else leave the pool as it is.

    Process-wide, so the CLI calls it (the commands that read the store), not the library:
    a Python user's process keeps the pool it chose. A ``JE_ARROW_MALLOC_CONF`` set by the
    user is kept; the variable is set only while jemalloc starts, so child processes do not
    inherit it.

    Returns
    -------
    bool : whether the pool was set.
    """
    before = os.environ.get(JEMALLOC_CONF)
    if before is None:
        os.environ[JEMALLOC_CONF] = RETURN_AT_ONCE
    try:
        import pyarrow as pa  # loading Arrow starts jemalloc, which reads the variable

        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)  # arenas made later (where it started before this call)
    except (NotImplementedError, pa.ArrowNotImplementedError):  # built without jemalloc
        return False
    finally:
        if before is None:
            del os.environ[JEMALLOC_CONF]
    pa.set_memory_pool(pool)
    return True
