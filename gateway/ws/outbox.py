"""A connection's outbox: frames waiting to be written to one WebSocket, bounded in count and
bytes, and the one writer that takes them (see ``Outbox``). What it holds, what its writer is
sending and what the socket's transport still buffers are charged to the pod's ``QueueBudget``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from broker import BUDGET_FLOOR, QueueBudget

PRESSURE_RECHECK = 0.1
"""Seconds between looks at the transport while a producer waits under the budget's pressure."""


class Outbox:
    """Frames waiting to be written, bounded in count and bytes.

    ``offer`` refuses an event frame past the bounds (the subscription is then demoted);
    ``force`` always queues (control messages, whose number the protocol bounds).

    Queued frames are flushed once the code that queued them yields to the event loop (one
    callback per outbox, however many frames came): the listener hands out every announcement
    it has already received first, so a connection that is behind gets all of them in one
    write. If the writer task is idle and ``write_now`` (the server's non-waiting batch write)
    takes them, the flush writes them itself, without a task switch; otherwise it wakes the
    writer, which waits for the transport.

    Every connection has one, so it is kept small: the writer waits on a future made for each
    wait, and the Event on which producers wait for room is made only once one has to wait.

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
        "_frames",
        "_max_bytes",
        "_max_frames",
        "_ready",
        "_room",
        "_shut",
        "_size",
        "_waiter",
        "_writing",
        "buffered",
        "write_now",
    )

    def __init__(
        self,
        max_frames: int,
        max_bytes: int,
        write_now: Callable[[list[str]], bool] | None = None,
        *,
        budget: QueueBudget | None = None,
        buffered: Callable[[], int] | None = None,
    ) -> None:
        self.write_now = write_now
        self.buffered = buffered
        """What the transport holds now (None: not known, counted as nothing)."""
        self._budget = budget if budget is not None else QueueBudget(1 << 62)
        self._writing = 0
        """Bytes of the batch the writer took and has not finished sending."""
        self._buffered = 0
        """What the transport held at the last look."""
        self._flush_due = False
        self._frames: list[str] = []
        self._size = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._ready = False
        """Frames queued, or a state change, since the writer last took."""
        self._waiter: asyncio.Future[None] | None = None
        """The writer, waiting in ``take``."""
        self._room: asyncio.Event | None = None
        self._shut = False

    def __len__(self) -> int:
        return len(self._frames)

    def queued(self) -> int:
        """Everything of this connection charged to the budget."""
        return self._size + self._writing + self._buffered

    def offer(self, frame: str) -> bool:
        if self._frames and (
            len(self._frames) >= self._max_frames or self._size + len(frame) > self._max_bytes
        ):
            return False
        if self._budget.pressure and self.queued() > BUDGET_FLOOR:
            return False
        self.force(frame)
        return True

    def force(self, frame: str) -> None:
        self._frames.append(frame)
        self._size += len(frame)
        self._budget.charge(len(frame))
        self._ready = True
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # the writer is busy (it takes the frames when done), woken or gone
        if self._frames and self.write_now is not None and self.write_now(self._frames):
            self._taken()
            self.sent()
            return
        waiter.set_result(None)

    def wake(self) -> None:
        """Wake the writer now (frames or not): it checks the session's state."""
        self._ready = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def roomy(self) -> bool:
        return (
            len(self._frames) <= self._max_frames // 2
            and self._size <= self._max_bytes // 2
            and not (self._budget.pressure and self.queued() > BUDGET_FLOOR)
        )

    def sent(self) -> None:
        """The writer finished its batch (or the watchdog looks): count what the transport
        still holds instead."""
        writing, self._writing = self._writing, 0
        self._budget.charge(-writing)
        self.look()

    def look(self) -> None:
        """Count what the transport holds now."""
        if self.buffered is not None:
            now = self.buffered()
            self._budget.charge(now - self._buffered)
            self._buffered = now

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
        self.wake()

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

    async def take(self) -> list[str]:
        """Wait for frames, then take them all (the writer sends a whole batch per wake-up).
        Only one task (the writer) may wait here."""
        if not self._ready:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames = self._frames
        self._writing += self._size
        self._size = 0
        self._taken()
        return frames

    def _taken(self) -> None:
        self._budget.charge(-self._size)
        self._ready = False
        self._frames = []
        self._size = 0
        if self._room is not None:
            self._room.set()
