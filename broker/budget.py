"""One pod's budget for what it has queued to clients (``DELTAGATE_MAX_QUEUED_BYTES``): every
sink's queue (a WebSocket's outbox and what its transport still holds) and the log pages that
catch-ups hold while they hand them out, counted in one number, so many slow clients together
cannot take the pod past its memory.

Three levels (docs/streaming.md, "One budget per pod"):

- under ``pressure`` (3/4 of the limit) nothing changes;
- past it, a sink holding more than ``FLOOR`` takes no more event messages: its subscriptions
  are demoted to reading the log at their own pace, and catch-ups let go of their pages while
  they wait, so the queues that are already big stop growing and nothing new is read for them;
- past the ``limit``, the owner of the sinks (the gateway's sessions) is called to cut the
  biggest of them (close 4008), as a last resort.

Sinks charge and refund their own bytes (``charge``); the fan-out holds pages (``hold`` and
``release``, counted once however many catch-ups share one page).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .reader import Slice

FLOOR = 64 * 1024
"""Under pressure, a sink may still hold this much: a client that keeps up never gets near it
(its queue is written out on every turn of the loop), so only those that are behind are held."""
ENFORCE_EVERY = 0.1
"""Seconds between two calls of the over-budget callback while the pod stays over."""


class QueueBudget:
    """Bytes queued to clients on this pod, against ``limit``."""

    __slots__ = ("_enforce_due", "_last_enforce", "_on_over", "_pages", "limit", "peak", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        """The most ever counted (for tests and the bench: a sampled gauge can miss a burst)."""
        self._pages: dict[int, list[int]] = {}  # id(page) -> [holders, bytes]
        self._on_over: Callable[[], None] | None = None
        self._enforce_due = False
        self._last_enforce = 0.0

    @property
    def pressure(self) -> bool:
        """Past 3/4 of the limit: big queues take no more, catch-ups wait."""
        return self.used * 4 > self.limit * 3

    @property
    def over(self) -> bool:
        """Past the limit: catch-ups read no more pages, the biggest sinks are cut."""
        return self.used > self.limit

    def on_over(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (soon, in the loop, at most every ``ENFORCE_EVERY`` s) while the
        pod is past its limit: it should cut the biggest sinks."""
        self._on_over = callback

    def charge(self, delta: int) -> None:
        """A sink queued (positive) or let go of (negative) ``delta`` bytes."""
        used = self.used = self.used + delta
        if delta <= 0:
            return
        if used > self.peak:
            self.peak = used
        if used > self.limit and not self._enforce_due and self._on_over is not None:
            self._enforce_due = True
            loop = asyncio.get_running_loop()
            loop.call_later(
                max(0.0, self._last_enforce + ENFORCE_EVERY - loop.time()), self._enforce
            )

    def _enforce(self) -> None:
        self._enforce_due = False
        self._last_enforce = asyncio.get_running_loop().time()
        if self.used > self.limit and self._on_over is not None:
            self._on_over()

    def hold(self, page: Slice) -> None:
        """A catch-up holds ``page`` while it hands it out."""
        entry = self._pages.get(id(page))
        if entry is None:
            size = sum(len(e.json) for e in page.events)
            self._pages[id(page)] = [1, size]
            self.charge(size)
        else:
            entry[0] += 1

    def release(self, page: Slice) -> None:
        entry = self._pages[id(page)]
        entry[0] -= 1
        if entry[0] == 0:
            del self._pages[id(page)]
            self.charge(-entry[1])
