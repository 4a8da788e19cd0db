"""Stopping background tasks (broker/aio.py), including one that loses a cancellation the way
a dispatcher's pub/sub loop was seen to: caught inside a library call, and back in its loop; and
the doorbell a dispatcher's worker waits on."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker import aio


@pytest.fixture(autouse=True)
def quick_recancel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aio, "RECANCEL_SECONDS", 0.05)


async def test_a_task_that_loses_a_cancellation_is_cancelled_again() -> None:
    lost = 0

    async def stubborn() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if lost < 2:
                    lost += 1
                    continue  # swallowed, as a library call may do
                raise

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(aio.cancel_and_wait([task]), 5)
    assert task.cancelled()
    assert lost == 2


async def test_ended_and_running_tasks_together() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise ValueError("its own business")

    loop = asyncio.get_running_loop()
    running = loop.create_task(forever())
    failed = loop.create_task(fails())
    await asyncio.sleep(0)
    await asyncio.wait_for(aio.cancel_and_wait([running, failed]), 5)
    assert running.cancelled()
    assert isinstance(failed.exception(), ValueError)  # left for its owner to read
    await aio.cancel_and_wait([])


async def test_a_doorbell_wakes_its_waiter_and_times_out_without_an_error() -> None:
    bell = aio.Doorbell(asyncio.get_running_loop())
    waiting = asyncio.create_task(bell.wait())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    bell.set()
    await asyncio.wait_for(waiting, 1)
    assert bell.is_set()
    await asyncio.wait_for(bell.wait(), 0.1)  # rung: returns at once, until cleared
    bell.clear()
    started = time.monotonic()
    await bell.wait(0.05)
    assert time.monotonic() - started >= 0.04
    assert not bell.is_set()


async def test_a_cancelled_wait_on_a_doorbell_is_cancelled_and_leaves_it_usable() -> None:
    bell = aio.Doorbell(asyncio.get_running_loop())
    waiting = asyncio.create_task(bell.wait(10))
    await asyncio.sleep(0.01)
    await cancel(waiting)
    again = asyncio.create_task(bell.wait())
    await asyncio.sleep(0)
    bell.set()
    await asyncio.wait_for(again, 1)


async def cancel(waiting: asyncio.Task[None]) -> None:
    """Cancel a task that waits, and see it end cancelled."""
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_slots_are_taken_without_waiting_until_none_is_free() -> None:
    slots = aio.Slots(2)
    assert slots.take() and slots.take()
    assert not slots.take()
    slots.give()
    assert slots.take()
    assert not slots.take()


async def test_a_freed_slot_goes_to_the_first_waiter_not_to_a_newcomer() -> None:
    slots = aio.Slots(1)
    assert slots.take()
    served: list[str] = []

    async def waits(name: str) -> None:
        await slots.wait()
        served.append(name)

    first = asyncio.create_task(waits("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(waits("second"))
    await asyncio.sleep(0)
    slots.give()
    assert not slots.take(), "a newcomer took the slot the first waiter was handed"
    await first
    assert served == ["first"]
    slots.give()
    await second
    assert served == ["first", "second"]
    slots.give()
    assert slots.take() and not slots.take()  # (one slot, as at the start)


async def test_a_cancelled_waiter_loses_nothing_and_passes_a_handed_slot_on() -> None:
    slots = aio.Slots(1)
    assert slots.take()
    # Cancelled while it waits: it leaves the line.
    gone = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    await cancel(gone)
    # Cancelled after the slot was handed to it, before it ran: the slot goes to the next one.
    handed = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    after = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    slots.give()  # handed to `handed`
    await cancel(handed)
    await asyncio.wait_for(after, 5)
    slots.give()
    assert slots.take() and not slots.take()  # (still exactly one slot)
