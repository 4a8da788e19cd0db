"""A uvicorn server in the test's own event loop, and what a task is suspended in: for the tests
that look inside a serving pod or protocol (its tasks' chains of coroutines)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[uvicorn.Server]:
    """``config`` served in this event loop until the block ends."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def awaiting_chain(task: asyncio.Task[object]) -> list[str]:
    """The coroutines ``task`` is suspended in, outermost first (each one a frame the task
    holds), then the type of what the innermost awaits (``FutureIter``: a C future's)."""
    chain, awaited = [], task.get_coro()
    while asyncio.iscoroutine(awaited):
        chain.append(awaited.__qualname__)
        awaited = awaited.cr_await
    return [*chain, type(awaited).__name__]
