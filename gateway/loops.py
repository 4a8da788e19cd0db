"""One object per running event loop (``PerLoop``), for what a pod keeps once, beside its loop's
callbacks and timers: the outbox flusher (gateway/ws/outbox.py), the keep-alive ping wheels
(gateway/ws/batching.py). A pod runs one loop; tests run many, one after another, and each gets
its own, let go with the loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """``get()``: the running loop's ``T``, made by ``make`` on its first use there."""

    __slots__ = ("_made", "_make")

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        made = self._made.get(loop)
        if made is None:
            made = self._made[loop] = self._make()
        return made
