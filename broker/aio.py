"""Stopping the broker's background tasks, and the deadline of an awaited answer (``expire``)."""

from __future__ import annotations

import asyncio
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
