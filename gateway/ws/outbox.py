"""A connection's outbox: frames waiting to be written to one WebSocket, bounded in count and
bytes (see ``Outbox``). What it holds, what its writer is sending and what the socket's
transport still buffers are charged to the pod's ``QueueBudget``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from broker import BUDGET_FLOOR, QueueBudget

from ..loops import PerLoop

PRESSURE_RECHECK = 0.1
"""Seconds between looks at the transport while a producer waits under the budget's pressure."""

Frame = Any

log = logging.getLogger("deltagate.ws")


class _Flusher:
    """One callback per turn of the loop for every outbox that has frames to flush (rather than
    one per outbox: the fan-out of one event touches every connection)."""

    __slots__ = ("due", "pending")

    def __init__(self) -> None:
        self.pending: list[Outbox] = []
        self.due = False

    def add(self, outbox: Outbox) -> None:
        self.pending.append(outbox)
        if not self.due:
            self.due = True
            asyncio.get_running_loop().call_soon(self.run)

    def run(self) -> None:
        self.due = False
        pending, self.pending = self.pending, []
        for outbox in pending:
            try:
                outbox._flush()
            except Exception:  # one connection's failure must not stall the others' writes
                log.exception("flushing a websocket outbox failed")


_FLUSHERS = PerLoop(_Flusher)


"""What one message is queued as: its whole frame (bytes) on a raw connection, its text (str)
where the library frames messages (permessage-deflate, another server)."""


class Outbox:
    """Frames waiting to be written, bounded in count and bytes.

    ``offer`` refuses an event frame past the bounds (the subscription is then demoted);
    ``force`` always queues (control messages, whose number the protocol bounds).

    Queued frames are flushed once the code that queued them yields to the event loop (one
    callback per turn for all outboxes, however many frames came): the listener hands out every
    announcement it has already received first, so a connection that is behind gets all of them
    in one write. The flush writes them itself with ``write_now`` (the server's non-waiting write)
    when the transport takes them, which is the rule for a client that keeps up: no task, no
    task switch. Only when the transport is full (or there is no ``write_now``) does it ask for
    a writer (``start_writer``), a task that takes batches (``take``) until the outbox is empty
    and then ends; while one runs the flush leaves the frames to it, so frames never overtake
    each other. An idle connection therefore has no task at all.

    The pod's budget sees three amounts: the frames queued here, the batch the writer took and
    is sending, and what the transport still buffered at the last look (``buffered``, after each
    write and on the watchdog's tick; it only shrinks in between, so the count is never low).
    Under the budget's pressure an outbox holding more than ``BUDGET_FLOOR`` takes no more event
    frames and is not roomy (its catch-ups wait).
    """

    __slots__ = (
        "_budget",
        "_buffered",
        "_flush_due",
        "_flusher",
        "_frames",
        "_max_bytes",
        "_max_frames",
        "_room",
        "_shut",
        "_size",
        "_writing",
        "buffered",
        "start_writer",
        "write_now",
        "writer_busy",
    )

    def __init__(
        self,
        max_frames: int,
        max_bytes: int,
        write_now: Callable[[list[Frame]], bool] | None = None,
        *,
        start_writer: Callable[[], None] | None = None,
        budget: QueueBudget | None = None,
        buffered: Callable[[], int] | None = None,
    ) -> None:
        self.write_now = write_now
        """Writes the queued frames now (True) or not at all (False). It must not keep the list
        it is given: once written, the list is emptied and used for the next frames."""
        self.start_writer = start_writer
        """Called (by the flush) when frames need a task that can wait for the transport; the
        owner sets ``writer_busy`` until that task has taken everything."""
        self.writer_busy = False
        self.buffered = buffered
        """What the transport holds now (None: not known, counted as nothing)."""
        self._budget = budget if budget is not None else QueueBudget(1 << 62)
        self._flush_due = False
        self._flusher = _FLUSHERS.get()  # this loop's (made in the loop that serves the connection)
        self._frames: list[Frame] = []
        self._size = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._writing = 0
        """Bytes of the batch the writer took and has not finished sending."""
        self._buffered = 0
        """What the transport held at the last look."""
        self._room: asyncio.Event | None = None
        self._shut = False

    def __len__(self) -> int:
        return len(self._frames)

    def queued(self) -> int:
        """Everything of this connection charged to the budget."""
        return self._size + self._writing + self._buffered

    def offer(self, frame: Frame) -> bool:
        # Once per delivery of a live event: the connection's own fields first (a queue under
        # the floor skips the budget's pressure check).
        frames = self._frames
        size = len(frame)
        if frames and (len(frames) >= self._max_frames or self._size + size > self._max_bytes):
            return False
        if self._size + self._writing + self._buffered > BUDGET_FLOOR and self._budget.pressure:
            return False
        # ``force``, inline (a call less per delivery).
        frames.append(frame)
        self._size += size
        self._budget.charge(size)
        if not self._flush_due:
            self._flush_due = True
            self._flusher.add(self)
        return True

    def force(self, frame: Frame) -> None:
        self._frames.append(frame)
        size = len(frame)
        self._size += size
        self._budget.charge(size)
        if not self._flush_due:
            self._flush_due = True
            self._flusher.add(self)

    def _flush(self) -> None:
        self._flush_due = False
        frames = self._frames
        if self.writer_busy or self._shut or not frames:
            return  # a writer takes them when it is done with its batch
        write_now = self.write_now
        if write_now is not None and write_now(frames):
            # Written (the transport copied or sent them). Once per delivery when the client
            # keeps up, so kept short: the list is emptied and kept for the next frames (an
            # allocation, and garbage collector work, less), and the frames' refund and the
            # new look at the transport (``look``) are one charge to the budget.
            frames.clear()
            buffered = self.buffered
            now = buffered() if buffered is not None else self._buffered
            self._budget.charge(now - self._buffered - self._size)
            self._size, self._buffered = 0, now
            if self._room is not None:
                self._room.set()
            return
        if self.start_writer is not None:
            self.writer_busy = True
            self.start_writer()

    def flush_now(self) -> None:
        """Flush at once (on close: what is queued goes before the close frame)."""
        self._flush()

    def roomy(self) -> bool:
        return (
            len(self._frames) <= self._max_frames // 2
            and self._size <= self._max_bytes // 2
            and not (self._budget.pressure and self.queued() > BUDGET_FLOOR)
        )

    def sent(self) -> None:
        """The writer finished its batch: count what the transport still holds instead."""
        writing, self._writing = self._writing, 0
        self._budget.charge(-writing)
        self.look()

    def look(self) -> None:
        """Count what the transport holds now."""
        if self.buffered is not None:
            now = self.buffered()
            if now != self._buffered:
                self._budget.charge(now - self._buffered)
                self._buffered = now

    def refresh(self) -> None:
        """``look``, for the watchdog: only where the transport held something at the last
        look (it can only have shrunk since)."""
        if self._buffered:
            self.look()

    def drop(self) -> None:
        """The connection is gone or cut: nothing of it counts any more."""
        self._budget.charge(-self.queued())
        self._frames = []
        self._size = self._writing = self._buffered = 0
        self.buffered = None

    def shut(self) -> None:
        """Nothing will be sent any more: release everyone waiting for room."""
        self._shut = True
        if self._room is not None:
            self._room.set()

    async def _room_made(self) -> None:
        if self._room is None:
            self._room = asyncio.Event()
        self._room.clear()
        if not self._budget.pressure:
            await self._room.wait()
            return
        # Under the budget's pressure, room also comes from the transport draining and other
        # connections' queues shrinking, which set no event: look again now and then.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), PRESSURE_RECHECK)
        self.look()

    async def wait_room(self) -> None:
        """For producers (catch-up reads): return once there is room. Once shut, wait until
        the owner cancels the waiter (returning would let it spin on a dead outbox)."""
        while self._shut or not self.roomy():
            if self._shut:
                await asyncio.get_running_loop().create_future()
            await self._room_made()

    async def wait_room_or_shut(self) -> None:
        """For the reader of a client's messages: also return once shut."""
        while not self.roomy() and not self._shut:
            await self._room_made()

    def take(self) -> list[Frame]:
        """For the writer: everything queued (empty: the writer is done and ends)."""
        frames = self._frames
        if frames:
            self._writing += self._size
            self._size = 0
            self._taken()
        return frames

    def _taken(self) -> None:
        if self._size:
            self._budget.charge(-self._size)
            self._size = 0
        self._frames = []
        if self._room is not None:
            self._room.set()
