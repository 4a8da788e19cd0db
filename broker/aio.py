"""Stopping the broker's background tasks, the deadline of an awaited answer (``expire``), and a
loop's doorbell (``Doorbell``)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

RECANCEL_SECONDS = 1.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return once every one of them has ended.

    A cancellation can be lost inside a library call. A dispatcher replica was seen draining
    forever: its pub/sub task showed the state "cancelling" but was back in its loop. So any
    task still running a second after ``cancel()`` is cancelled again, until it ends. Outcomes
    are not inspected: a task that must report a failure logs it itself.
    """
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
        for task in pending:
            task.cancel()


async def discard(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any), wait for it to end and drop what it ended with: for work done
    ahead that is no longer wanted (the caller already failed, or stopped, for a reason of its
    own), whose error would otherwise be logged as never retrieved."""
    if task is None:
        return
    await cancel_and_wait([task])
    if not task.cancelled():
        task.exception()


def expire(future: asyncio.Future[Any]) -> None:
    """A deadline's timer (``loop.call_at(deadline, expire, future)``): ``future`` fails with
    ``TimeoutError`` unless it is done. One timer on the answer a caller awaits, rather than an
    ``asyncio.timeout`` per call (a context, the current task, the loop asked for twice)."""
    if not future.done():
        future.set_exception(TimeoutError())


class Doorbell:
    """An ``asyncio.Event`` with one waiter at a time and a timeout of its own, that asks for the
    running loop once. On Python 3.11 ``Event.wait`` and ``asyncio.timeout`` ask for it on every
    call, each a ``getpid`` system call (CPython gh-100363, gone in 3.12): a dispatcher flat out
    made 0.34 of them per delivery, all from its worker's wait for the next thing to do (strace)."""

    __slots__ = ("_loop", "_rung", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._rung = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._rung = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._rung = False

    def is_set(self) -> bool:
        return self._rung

    async def wait(self, within: float | None = None) -> None:
        """Until it rings, or ``within`` seconds passed (then it returns all the same)."""
        if self._rung:
            return
        assert self._waiter is None, "a doorbell has one waiter at a time"
        waiter = self._waiter = self._loop.create_future()
        timer = None if within is None else self._loop.call_later(within, _ring, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


class Slots:
    """A counting semaphore whose uncontended use is two plain calls: ``if not slots.take():
    await slots.wait()`` ... ``slots.give()``. ``asyncio.Semaphore`` costs three coroutines, four
    more calls and a generator per use on Python 3.11 (``locked()``): ~3% of a dispatcher's CPU
    per delivery (py-spy). Waiters are served in order; a freed slot is handed to the first
    waiter directly, so a newcomer never takes it before them."""

    __slots__ = ("_free", "_loop", "_waiters")

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def take(self) -> bool:
        """Take a slot if one is free and nobody waits for one."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Until a slot is handed over (``take`` failed). A caller cancelled once it was handed
        one passes it on."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        handed = loop.create_future()
        self._waiters.append(handed)
        try:
            await handed
        except BaseException:
            if handed.done() and not handed.cancelled():
                self.give()  # handed a slot, then cancelled: the next waiter's
            else:
                self._waiters.remove(handed)
            raise

    def give(self) -> None:
        """Return a slot: to the first waiter, if any waits."""
        waiters = self._waiters
        while waiters:
            handed = waiters.popleft()
            if not handed.done():
                handed.set_result(None)
                return
        self._free += 1


def _ring(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
