"""The session outbox's flush rules (gateway/session.py): frames queued in one turn of the event
loop go out together, written directly when the writer is idle and the transport takes them, and
through the writer task otherwise; never out of order, never after the outbox is shut."""

from __future__ import annotations

import asyncio

from gateway.ws.outbox import Outbox


class Transport:
    """A stand-in for the server's non-waiting batch write."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.accepting = True

    def write_now(self, frames: list[str]) -> bool:
        if not self.accepting:
            return False
        self.writes.append(list(frames))
        return True


async def idle_writer(outbox: Outbox) -> asyncio.Task[list[str]]:
    task = asyncio.get_running_loop().create_task(outbox.take())
    await asyncio.sleep(0)  # now waiting in take()
    return task


async def test_frames_of_one_turn_are_written_together_without_waking_the_writer() -> None:
    transport = Transport()
    outbox = Outbox(100, 1 << 20, transport.write_now)
    writer = await idle_writer(outbox)
    for frame in ("a", "b", "c"):
        assert outbox.offer(frame)
    assert transport.writes == []  # nothing until the producer yields
    await asyncio.sleep(0)
    assert transport.writes == [["a", "b", "c"]]
    assert len(outbox) == 0 and outbox.roomy()
    outbox.force("d")
    await asyncio.sleep(0)
    assert transport.writes == [["a", "b", "c"], ["d"]]
    assert not writer.done()  # the writer never woke
    writer.cancel()


async def test_a_transport_that_is_full_hands_the_frames_to_the_writer() -> None:
    transport = Transport()
    transport.accepting = False
    outbox = Outbox(100, 1 << 20, transport.write_now)
    writer = await idle_writer(outbox)
    outbox.offer("a")
    outbox.offer("b")
    assert await asyncio.wait_for(writer, 1) == ["a", "b"]
    assert transport.writes == []


async def test_frames_queued_while_the_writer_is_busy_wait_for_it_in_order() -> None:
    transport = Transport()
    outbox = Outbox(100, 1 << 20, transport.write_now)
    # The writer took a batch and is still sending it (not waiting in take()).
    outbox.offer("a")
    assert await asyncio.wait_for(outbox.take(), 1) == ["a"]
    outbox.offer("b")
    outbox.offer("c")
    await asyncio.sleep(0)
    assert transport.writes == []  # "b" must not overtake a batch still being sent
    assert await asyncio.wait_for(outbox.take(), 1) == ["b", "c"]


async def test_without_a_direct_write_the_writer_gets_everything() -> None:
    outbox = Outbox(100, 1 << 20)
    writer = await idle_writer(outbox)
    outbox.offer("a")
    outbox.force("b")
    assert await asyncio.wait_for(writer, 1) == ["a", "b"]


async def test_nothing_is_written_once_shut() -> None:
    transport = Transport()
    outbox = Outbox(100, 1 << 20, transport.write_now)
    writer = await idle_writer(outbox)
    outbox.offer("a")
    outbox.shut()
    await asyncio.sleep(0)
    assert transport.writes == []
    assert await asyncio.wait_for(writer, 1) == ["a"]  # woken to see the state change


async def test_offer_refuses_past_the_bounds_and_force_does_not() -> None:
    outbox = Outbox(2, 1 << 20)
    assert outbox.offer("a") and outbox.offer("b")
    assert not outbox.offer("c")  # demote the subscription
    outbox.force("control")
    assert len(outbox) == 3
