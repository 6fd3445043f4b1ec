"""Running units one after another, or side by side on single-threaded threads.

:func:`each_unit` yields every item with a :class:`concurrent.futures.Future` of its outcome,
in the items' order, so the caller handles each unit's error where it stands.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any


@contextlib.contextmanager
def each_unit(
    fn: Callable[..., Any], items: Sequence[tuple], workers: int, *, torch_threads: bool = True
) -> Iterator[Iterator[tuple[tuple, Future]]]:
    """``fn(*item)`` for every item, as ``(item, future)`` pairs in the order of ``items``.

    With one worker each call runs when its pair is reached, so nothing after a unit the
    caller stops at (by raising) starts. With more, the calls run on ``workers`` threads, torch
    and BLAS single-threaded in each (torch left alone, not imported, without
    ``torch_threads``); when the caller raises, units not yet started are cancelled and those
    running finish.
    """
    if workers == 1:
        yield ((item, _done(fn, item)) for item in items)
        return
    from layerprobe.runtime.pools import single_threaded_pool

    with single_threaded_pool(workers, torch_threads=torch_threads) as pool:
        futures = [pool.submit(fn, *item) for item in items]
        try:
            yield zip(items, futures, strict=True)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _done(fn: Callable[..., Any], item: tuple) -> Future:
    """A future already holding ``fn(*item)``'s result or its exception."""
    future: Future = Future()
    try:
        future.set_result(fn(*item))
    except Exception as err:  # noqa: BLE001 - handed to the caller through the future
        future.set_exception(err)
    return future
