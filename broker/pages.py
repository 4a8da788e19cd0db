"""Pages of a store's log for the live fan-out: a subscription catching up (replay, or after a
demotion) and a feed repairing a gap read here, through ``broker.reader`` (so across the archive
boundary, and told when history is gone).

Shared: identical reads in flight are made once (a reconnect storm resuming from the same cursor
costs one read), and full pages, which can never change, are kept in an LRU bounded by their
size.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

from .reader import LogReader, Slice

PAGE = 1000
PAGE_CACHE_CHARS = 8 * 1024 * 1024


class PageReader:
    """Catch-up reads of the log, shared: identical reads in flight are made once, and full
    pages (which can never change) are kept in an LRU bounded by their size."""

    def __init__(self, log: LogReader, size: int = PAGE, budget: int = PAGE_CACHE_CHARS) -> None:
        self._log = log
        self._size = size
        self._budget = budget
        self._used = 0
        self._pages: OrderedDict[tuple[str, int], tuple[Slice, int]] = OrderedDict()
        self._inflight: dict[tuple[str, int], asyncio.Future[Slice]] = {}

    async def read(self, store: str, after: int) -> Slice:
        key = (store, after)
        cached = self._pages.get(key)
        if cached is not None:
            self._pages.move_to_end(key)
            return cached[0]
        pending = self._inflight.get(key)
        if pending is not None:
            with contextlib.suppress(asyncio.CancelledError):
                # The reader we waited on was cancelled (its client left): read ourselves.
                return await asyncio.shield(pending)
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise asyncio.CancelledError
            return await self.read(store, after)
        future: asyncio.Future[Slice] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            page = await self._log.after(store, after, self._size)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the waiters, if any, re-raise it
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(page)
        if len(page.events) == self._size:
            chars = sum(len(e.json) for e in page.events)
            self._pages[key] = (page, chars)
            self._used += chars
            while self._used > self._budget and self._pages:
                self._used -= self._pages.popitem(last=False)[1][1]
        return page

    def forget(self, store: str) -> None:
        for key in [k for k in self._pages if k[0] == store]:
            self._used -= self._pages.pop(key)[1]
