"""The read side of one subscription's worker: follows its store's log after a cursor and puts
the matching events into the ``Window`` (type patterns and stream first, then the content
conditions ``match`` and ``query`` on the decoded event, only for filters that have them). The
cursor moves past every event read, matching or not, so progress does too.

Events announced on the store's live channel are taken as they are when they directly follow the
cursor (saving a read); anything else (a gap, a full window) means reading the log from the
cursor. The log is also polled every ``poll_interval``, so a lost announcement costs latency,
never an event."""

from __future__ import annotations

import time

from .. import codec
from ..filters import Filter
from ..log import EventLog
from ..types import LoggedEvent
from .window import Window

PAGE = 256
PAGES_PER_ROUND = 8
"""Log pages one subscription reads before it gets on with delivering (a sparse filter)."""
WINDOW_CHARS = 16 * 1024 * 1024
"""Event text one subscription holds in memory at most."""


class LogTail:
    def __init__(
        self, log: EventLog, store: str, window: Window, *, size: int, poll_interval: float
    ) -> None:
        self._log = log
        self._store = store
        self._window = window
        self._size = size
        self._poll_interval = poll_interval
        self.cursor = 0
        """The last position read (matching or not)."""
        self.next_poll = 0.0
        """When the log is read next even if nothing rang (monotonic)."""
        self._more = True
        self._rung = 0  # doorbell rings so far: a read that started before one is not the last

    def poke(self) -> None:
        """New events may be in the log."""
        self._more = True
        self._rung += 1

    def take(self, events: list[LoggedEvent], flt: Filter) -> bool:
        """Announced events, taken while they directly follow the cursor and the window has
        room; False when the log must be read instead (the caller pokes)."""
        for event in events:
            if event.global_position <= self.cursor:
                continue
            if event.global_position != self.cursor + 1 or not self.has_room():
                return False
            self.cursor = event.global_position
            if flt.matches(event.stream_id, event.type):
                self._add(event, flt)
        return True

    async def fill(self, flt: Filter) -> None:
        """Read matching events after the cursor while the window has room."""
        now = time.monotonic()
        if now >= self.next_poll:
            self._more = True
            self.next_poll = now + self._poll_interval
        for _ in range(PAGES_PER_ROUND):
            if not self.may_read():
                return
            want = min(PAGE, self._size - len(self._window))
            rung = self._rung
            page = await self._log.read_after(self._store, self.cursor, want)
            for event in page:
                if event.global_position <= self.cursor:
                    continue  # an announcement got there during the read
                self.cursor = event.global_position
                if flt.matches(event.stream_id, event.type):
                    self._add(event, flt)
            if len(page) < want and rung == self._rung:
                self._more = False

    def _add(self, event: LoggedEvent, flt: Filter) -> None:
        decoded = codec.loads(event.json)
        if flt.contents and not flt.accepts(decoded):
            return  # content conditions (match, query) unmet: passed over like any other
        self._window.add(event, str(decoded["eventId"]))

    def may_read(self) -> bool:
        """New events may be waiting and the window has room for a page of them (refilling it
        one event per finished delivery would cost a read per delivery)."""
        size = self._size
        return (
            self._more
            and len(self._window) <= size - min(PAGE, max(1, size // 2))
            and self._window.chars < WINDOW_CHARS
        )

    def has_room(self) -> bool:
        return len(self._window) < self._size and self._window.chars < WINDOW_CHARS
