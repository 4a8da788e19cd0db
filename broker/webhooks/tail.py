"""The read side of one subscription's worker: follows its store's log after a cursor and puts
the matching events into the ``Window`` (type patterns and stream first, then the content
conditions ``match`` and ``query`` on the decoded event, only for filters that have them; the
others take the eventId without decoding). The cursor moves past every event read, matching or
not, so progress does too.

Events announced on the store's live channel are taken as they are when they directly follow the
cursor (saving a read); anything else (a gap, a full window) means reading the log from the
cursor. The log is also polled every ``poll_interval``, so a lost announcement costs latency,
never an event.

Reads go through the one ``LogReader`` (``EventLog.after``), across the archive and Redis: a
subscription paused while retention trimmed Redis catches up from the archive, in order. History
deleted everywhere (retention past the archive, or no archive) is reported (``on_gone``) and
skipped: the tail goes on from the earliest event that exists.

A subscription that starts from a time (``position: {"time": ...}``) no event has reached yet
starts at the head: until an event created at or after it is read (``start_time``), the events
before it are passed over, matching or not, like events that do not match. Whether a start time
is pending is checked once per read (a page, an announcement), not per event.

The cursor belongs to one history of the store (its ``epoch``). Before reading, the store's head
and epoch are read in one round trip; an announcement carries the epoch of its events. When the
store was created again (another epoch) or the cursor lies beyond the head, the tail reads
nothing more and says so (``rewound``): the worker then auto-pauses the subscription, which an
operator resumes from a position of the history as it is now."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from .. import codec
from ..errors import StoreNotFound
from ..filters import Filter
from ..log import EventLog
from ..types import LoggedEvent
from .window import Window

PAGE = 256
PAGES_PER_ROUND = 8
"""Log pages one subscription reads before it gets on with delivering (a sparse filter)."""
WINDOW_CHARS = 16 * 1024 * 1024
"""Event text one subscription holds in memory at most."""
READ_AHEAD = 4
"""While the window holds fewer streams than requests may be in flight, and the last page read
brought a stream it did not hold, reading goes on up to this many times its size: a log whose
streams come in runs (a hundred events of one, then of the next) would otherwise leave most
lanes idle, each stream sending one event per save."""


class LogTail:
    def __init__(
        self,
        log: EventLog,
        store: str,
        window: Window,
        *,
        size: int,
        poll_interval: float,
        on_gone: Callable[[int, int], None],
        streams: int = 1,
    ) -> None:
        self._log = log
        self.on_gone = on_gone
        """(first, last): positions after the cursor that no longer exist anywhere."""
        self._store = store
        self._window = window
        self._size = size
        self._streams = streams
        """Streams the window should hold to keep every lane busy (requests in flight)."""
        self._new_streams = True
        """The last page read brought a stream the window did not hold."""
        self._poll_interval = poll_interval
        self.cursor = 0
        """The last position read (matching or not)."""
        self.next_poll = 0.0
        """When the log is read next even if nothing rang (monotonic)."""
        self._more = True
        self._rung = 0  # doorbell rings so far: a read that started before one is not the last
        self.epoch: str | None = None
        """The store uid the cursor belongs to (None: not known yet, taken at the first read)."""
        self.rewound = False
        """The store's history is no longer the cursor's: nothing more is read."""
        self.start_time: datetime | None = None
        """A start time not reached yet: events created before it are passed over. None once
        an event created at or after it was read (the start): from there on, every event is
        read as usual."""

    def poke(self) -> None:
        """New events may be in the log."""
        self._more = True
        self._rung += 1

    def take(self, events: list[LoggedEvent], flt: Filter, epoch: str) -> bool:
        """Announced events, taken while they directly follow the cursor and the window has
        room; False when the log must be read instead (the caller pokes)."""
        if epoch != self.epoch:
            return False  # another history (or not known yet): the read decides
        if self.start_time is not None:
            if events and events[0].global_position > self.cursor + 1:
                return False  # a gap (one append's events are consecutive): the read decides
            self._pass_early(events, self.start_time)
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
        if not self.may_read():
            return
        cursor = self.cursor  # (an announcement taken during the read may move it past head)
        try:
            head, epoch = await self._log.head_and_epoch(self._store)
        except StoreNotFound:
            self._more = False  # deleted: nothing to read until a store of the name exists
            return
        if self.epoch is None:
            self.epoch = epoch
        if epoch != self.epoch or cursor > head:
            self.rewound = True
            return
        for _ in range(PAGES_PER_ROUND):
            if not self.may_read():
                return
            want = min(PAGE, self._room())
            rung = self._rung
            streams = self._window.streams
            piece = await self._log.after(self._store, self.cursor, want)
            page = piece.events
            gone = piece.truncated_before
            if gone is not None and gone > self.cursor + 1 and page:
                # Retention deleted these everywhere (or there is no archive): say so, go on
                # from the earliest event that exists.
                self.on_gone(self.cursor + 1, gone - 1)
                self.cursor = gone - 1
            if self.start_time is not None:
                self._pass_early(page, self.start_time)
            for event in page:
                if event.global_position <= self.cursor:
                    continue  # an announcement got there during the read
                self.cursor = event.global_position
                if flt.matches(event.stream_id, event.type):
                    self._add(event, flt)
            self._new_streams = self._window.streams > streams
            if len(page) < want and rung == self._rung:
                self._more = False

    def _pass_early(self, events: Sequence[LoggedEvent], start: datetime) -> None:
        """Move the cursor past the events created before ``start``; the first created at or
        after it is the start, and the condition is dropped (``codec.passed_before``)."""
        self.cursor, reached = codec.passed_before(events, self.cursor, start.timestamp())
        if reached:
            self.start_time = None

    def _add(self, event: LoggedEvent, flt: Filter) -> None:
        if flt.contents:
            decoded = codec.loads(event.json)
            if not flt.accepts(decoded):
                return  # content conditions (match, query) unmet: passed over like any other
            self._window.add(event, str(decoded["eventId"]))
            return
        self._window.add(event, codec.event_id_of(event.json))

    def may_read(self) -> bool:
        """New events may be waiting and the window has room for a page of them (refilling it
        one event per finished delivery would cost a read per delivery)."""
        return (
            self._more
            and not self.rewound
            and self._room() >= min(PAGE, max(1, self._size // 2))
            and self._window.chars < WINDOW_CHARS
        )

    def _room(self) -> int:
        """Events the window may take now: up to its size, or ``READ_AHEAD`` times that while
        it holds too few streams and reading still finds new ones."""
        window = self._window
        size = self._size
        if window.streams < self._streams and self._new_streams:
            size *= READ_AHEAD
        return size - len(window)

    def has_room(self) -> bool:
        return len(self._window) < self._size and self._window.chars < WINDOW_CHARS
