"""Starting from a time (contract section 9): the first event created at or after an instant, found
through the per-second time index (and the archive for what left Redis), exact at second and
millisecond boundaries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from broker import (
    Archive,
    EventLog,
    Fanout,
    Filter,
    Lifecycle,
    LifecycleOptions,
    NewEvent,
    StoreAdmin,
    TimeStart,
)
from broker import log as log_module

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
# Event i is created at T0 + OFFSETS[i] milliseconds: around a second boundary, and later.
OFFSETS = [0, 999, 1000, 1001, 1999, 2000, 5000]


async def append_at(log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for i, ms in enumerate(OFFSETS):
        moment = (T0 + timedelta(milliseconds=ms)).timestamp()
        monkeypatch.setattr(log_module.time, "time", lambda m=moment: m)
        await log.append(store, f"s-{i % 2}", [NewEvent("tick", {"i": i})])
    monkeypatch.undo()


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


CASES = [
    (-1000, 1),  # before everything: the first event
    (0, 1),
    (0.5, 2),
    (999, 2),
    (999.5, 3),
    (1000, 3),  # exactly on the second
    (1000.5, 4),
    (1001, 4),
    (1002, 5),
    (2000, 6),
    (2001, 7),
    (5000, 7),
    (5001, 8),  # after everything: the next event to come
]


async def test_first_at_is_exact_at_second_and_millisecond_boundaries(
    log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await append_at(log, store, monkeypatch)
    for ms, position in CASES:
        assert await log.first_at(store, at(ms)) == position, ms


async def test_first_at_reads_the_archive_for_what_left_redis(
    redis: aioredis.Redis, archive_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = Archive(archive_url)
    try:
        log = EventLog(redis, archive=archive)
        await StoreAdmin(redis, archive).create("tim", settings={"hotRetention": {"maxEvents": 2}})
        await append_at(log, "tim", monkeypatch)
        lifecycle = Lifecycle(redis, log, archive, LifecycleOptions())
        while await lifecycle.run_once():
            pass
        assert int(await redis.hget("dg:{tim}:meta", "low")) == 6
        for ms, position in CASES:
            assert await log.first_at("tim", at(ms)) == position, ms
    finally:
        await archive.close()


async def test_a_subscription_from_a_time_starts_at_that_event(
    redis: aioredis.Redis, log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.broker.test_fanout import Collector

    await append_at(log, store, monkeypatch)
    fanout = Fanout(redis, log, poll_interval=60.0)
    await fanout.start()
    try:
        sink = Collector()
        await fanout.subscribe(
            store, Filter.parse("*"), sink, sub_id="t", position=TimeStart(at(1000))
        )
        events = await sink.until(5)
        assert [e.global_position for e in events] == [3, 4, 5, 6, 7]
    finally:
        await fanout.close()


async def test_a_start_still_ahead_passes_over_what_is_created_before_it(
    redis: aioredis.Redis, log: EventLog, store: str
) -> None:
    """A time still ahead is no ``latest``: events appended after the subscribe but created
    before the time are passed over (also by the catch-up that waits for it), the first created
    at or after it is delivered, then everything after it."""
    from tests.broker.test_fanout import Collector

    fanout = Fanout(redis, log, poll_interval=60.0)
    await fanout.start()
    try:
        sink = Collector()
        start = datetime.now(UTC) + timedelta(seconds=1.5)
        await fanout.subscribe(
            store, Filter.parse("*"), sink, sub_id="t", position=TimeStart(start)
        )
        early = await log.append(store, "s-1", [NewEvent("early", {})])
        await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 0.05)
        late = await log.append(store, "s-1", [NewEvent("late", {}), NewEvent("later", {})])
        events = await sink.until(2)
        await asyncio.sleep(0.5)  # (nothing else comes)
        assert [e.global_position for e in sink.events] == [
            late.last_position - 1,
            late.last_position,
        ]
        assert early.last_position < late.last_position - 1 and events
    finally:
        await fanout.close()


def test_time_positions_parse_iso_instants() -> None:
    assert TimeStart.parse({"time": "2026-12-01T10:00:00Z"}).moment == T0
    assert TimeStart.parse({"time": "2026-12-01T11:00:00+01:00"}).moment == T0
    assert TimeStart.parse({"time": "2026-12-01T10:00:00"}).moment == T0  # no zone: UTC
    for bad in ({"time": "yesterday"}, {"time": 5}, {"at": "x"}, {"time": "x", "y": 1}):
        with pytest.raises(ValueError):
            TimeStart.parse(bad)
