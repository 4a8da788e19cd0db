"""One timer for a periodic beat of many connections (``Heartbeats``): the keep-alive comments of
a pod's SSE responses, the keep-alive pings of its WebSockets. A timer handle per connection
costs about 0.5 KiB of an idle connection's memory (tracemalloc); a slot in a wheel, a dict
entry."""

from __future__ import annotations

import asyncio
from typing import Protocol

TICKS = 10
"""The period's slots: a member's first beat comes between a period less one tick and a period
after it joined."""


class Beating(Protocol):
    def keep_alive(self) -> None:
        """The member's beat: it may write, never wait."""
        ...


class Heartbeats:
    """Beats each member once per ``period``, with one timer for all of them.

    The period is cut into ``TICKS`` slots and the timer beats one slot per tick; a member joins
    the slot that beat last, so it beats once per period. The timer runs only while some member
    is in the wheel (the last one's ``discard`` stops it) and ``close`` stops it."""

    __slots__ = ("_handle", "_next", "_slots", "_tick", "period")

    def __init__(self, period: float) -> None:
        self.period = period
        self._tick = period / TICKS
        self._slots: list[dict[Beating, None]] = [{} for _ in range(TICKS)]
        self._next = 0
        """The slot the next tick beats."""
        self._handle: asyncio.TimerHandle | None = None

    def add(self, member: Beating) -> int:
        """Beat ``member`` from now on; returns its slot (for ``discard``)."""
        slot = (self._next - 1) % TICKS
        self._slots[slot][member] = None
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self._tick, self._beat)
        return slot

    def discard(self, member: Beating, slot: int) -> None:
        self._slots[slot].pop(member, None)
        if self._handle is not None and not any(self._slots):
            self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _beat(self) -> None:
        members = self._slots[self._next]
        self._next = (self._next + 1) % TICKS
        self._handle = asyncio.get_running_loop().call_later(self._tick, self._beat)
        # (a copy: a beat that ends its member's connection may take it out of the slot)
        for member in list(members):
            member.keep_alive()
