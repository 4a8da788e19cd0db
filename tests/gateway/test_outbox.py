"""The session outbox's flush rules (gateway/ws/outbox.py): frames queued in one turn of the
event loop go out together, written directly when the transport takes them, and through a writer
task (made only then, ended once it has taken everything) otherwise; never out of order, never
after the outbox is shut; and every byte is charged to the pod's budget until it has left."""

from __future__ import annotations

import asyncio

from broker import BUDGET_FLOOR, QueueBudget
from gateway.ws.outbox import Outbox


class Transport:
    """A stand-in for the server's non-waiting batch write."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.accepting = True
        self.held = 0

    def write_now(self, frames: list[str]) -> bool:
        if not self.accepting:
            return False
        self.writes.append(list(frames))
        return True


class Writers:
    """Records the outbox's requests for a writer task (the session's ``_start_writer``)."""

    def __init__(self) -> None:
        self.started = 0

    def start(self) -> None:
        self.started += 1


async def test_frames_of_one_turn_are_written_together_without_a_task() -> None:
    transport, writers = Transport(), Writers()
    outbox = Outbox(100, 1 << 20, transport.write_now, start_writer=writers.start)
    for frame in ("a", "b", "c"):
        assert outbox.offer(frame)
    assert transport.writes == []  # nothing until the producer yields
    await asyncio.sleep(0)
    assert transport.writes == [["a", "b", "c"]]
    assert len(outbox) == 0 and outbox.roomy()
    outbox.force("d")
    await asyncio.sleep(0)
    assert transport.writes == [["a", "b", "c"], ["d"]]
    assert writers.started == 0  # no writer was ever needed


async def test_a_transport_that_is_full_hands_the_frames_to_a_writer() -> None:
    transport, writers = Transport(), Writers()
    transport.accepting = False
    outbox = Outbox(100, 1 << 20, transport.write_now, start_writer=writers.start)
    outbox.offer("a")
    outbox.offer("b")
    await asyncio.sleep(0)
    assert writers.started == 1 and outbox.writer_busy
    assert transport.writes == []
    # Frames queued while the writer runs wait for it, in order: never written past it.
    transport.accepting = True
    outbox.offer("c")
    await asyncio.sleep(0)
    assert transport.writes == [] and writers.started == 1
    assert outbox.take() == ["a", "b", "c"]
    outbox.sent()
    assert outbox.take() == []  # the writer ends here
    outbox.writer_busy = False
    outbox.offer("d")
    await asyncio.sleep(0)
    assert transport.writes == [["d"]]  # written directly again


async def test_without_a_direct_write_the_writer_gets_everything() -> None:
    writers = Writers()
    outbox = Outbox(100, 1 << 20, start_writer=writers.start)
    outbox.offer("a")
    outbox.force("b")
    await asyncio.sleep(0)
    assert writers.started == 1
    assert outbox.take() == ["a", "b"]


async def test_nothing_is_written_once_shut() -> None:
    transport, writers = Transport(), Writers()
    outbox = Outbox(100, 1 << 20, transport.write_now, start_writer=writers.start)
    outbox.offer("a")
    outbox.shut()
    await asyncio.sleep(0)
    assert transport.writes == [] and writers.started == 0


async def test_offer_refuses_past_the_bounds_and_force_does_not() -> None:
    outbox = Outbox(2, 1 << 20)
    assert outbox.offer("a") and outbox.offer("b")
    assert not outbox.offer("c")  # demote the subscription
    outbox.force("control")
    assert len(outbox) == 3


async def test_every_byte_is_charged_to_the_budget_until_it_left() -> None:
    budget = QueueBudget(1 << 20)
    transport, writers = Transport(), Writers()
    outbox = Outbox(
        100,
        1 << 20,
        transport.write_now,
        start_writer=writers.start,
        budget=budget,
        buffered=lambda: transport.held,
    )
    outbox.offer("x" * 100)
    assert budget.used == 100
    transport.held = 40  # the transport kept part of the write
    await asyncio.sleep(0)
    assert budget.used == 40 and outbox.queued() == 40
    transport.accepting = False
    outbox.offer("y" * 10)
    await asyncio.sleep(0)  # to a writer
    assert budget.used == 50
    assert outbox.take() == ["y" * 10]
    assert budget.used == 50  # the writer's batch still counts
    transport.held = 0
    outbox.sent()
    assert budget.used == 0
    outbox.force("z")
    outbox.drop()
    assert budget.used == 0 and outbox.queued() == 0


async def test_under_the_budgets_pressure_a_big_queue_takes_no_more_events() -> None:
    budget = QueueBudget(4 * BUDGET_FLOOR)
    big = Outbox(1000, 1 << 30, budget=budget)
    small = Outbox(1000, 1 << 30, budget=budget)
    assert big.offer("b" * (3 * BUDGET_FLOOR + 1))
    assert budget.pressure
    assert not big.offer("more")  # past the floor, under pressure: no more events
    assert not big.roomy()
    assert small.offer("s") and small.roomy()  # one that keeps up is not held back
    big.force("control")  # replies are never refused
