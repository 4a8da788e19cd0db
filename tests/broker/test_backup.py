"""``Importer``: exported events restored with their positions, ids and times, the streams they
belong to registered as an append registers them, and what does not continue the store refused
without writing anything. (The ``deltagate export``/``import`` commands: tests/clients.)"""

from __future__ import annotations

from typing import Any

import pytest

from broker import EventLog, Importer, ImportRejected, NewEvent, StoreAdmin, codec
from broker.keys import StoreKeys


async def exported(log: EventLog, store: str) -> list[dict[str, Any]]:
    """The store's events as ``deltagate export`` writes them (as the API serves them)."""
    page = await log.query(store, flt=None, limit=1000)
    return [codec.loads(e.json) for e in page.events]


async def fill(log: EventLog, store: str) -> None:
    """12 events: a-0..a-3 at 1-4, b-0..b-3 at 5-8, a-4 at 9, c-0..c-1 at 10-11, b-4 at 12."""
    for sid, n in (("a", 4), ("b", 4), ("a", 1), ("c", 2), ("b", 1)):
        await log.append(store, sid, [NewEvent("t", {"n": i}) for i in range(n)])


async def test_an_export_starting_mid_stream_registers_its_streams(
    redis: Any, log: EventLog, stores: StoreAdmin, store: str
) -> None:
    await fill(log, store)
    events = (await exported(log, store))[5:]  # `export --from 6`: b and a start mid-stream
    await stores.create("copy")
    importer = Importer(redis)
    uid, _ = await importer.head("copy")
    assert await importer.restore("copy", uid, events) == 12

    info = await stores.get("copy")
    assert (info.total_streams, info.head_position) == (3, 12)
    streams, total = await log.list_streams("copy")
    assert total == 3
    # In the order of their first kept event (b-1 at 6, a-4 at 9, c-0 at 10), each at its
    # version, created at its first kept event and updated at its last.
    by_position = {e["globalPosition"]: e["createdAt"] for e in events}
    assert [(s.stream_id, s.stream_position, s.created_at, s.updated_at) for s in streams] == [
        ("b", 4, by_position[6], by_position[12]),
        ("a", 4, by_position[9], by_position[9]),
        ("c", 1, by_position[10], by_position[11]),
    ]
    appended = await log.append("copy", "a", [NewEvent("t", {})], expected=5)
    assert appended.first_position == 13
    assert [s.stream_id for s in (await log.list_streams("copy"))[0]] == ["b", "a", "c"]


async def test_a_refused_batch_writes_nothing(
    redis: Any, log: EventLog, stores: StoreAdmin, store: str
) -> None:
    await fill(log, store)
    events = await exported(log, store)
    await stores.create("copy")
    importer = Importer(redis)
    uid, _ = await importer.head("copy")
    with pytest.raises(ImportRejected, match="line 4: globalPosition 5 does not continue"):
        await importer.restore("copy", uid, events[:3] + events[4:])
    k = StoreKeys("copy")
    assert await redis.xlen(k.log) == 0 and await redis.zcard(k.streams) == 0
    assert await importer.head("copy") == (uid, 0)
    assert await importer.restore("copy", uid, events) == 12  # the store is whole, as before


async def test_check_refuses_another_event_at_a_held_position(
    redis: Any, log: EventLog, stores: StoreAdmin, store: str
) -> None:
    await fill(log, store)
    events = await exported(log, store)
    importer = Importer(redis)
    await importer.check(store, events[:12])  # the store's own events: resumable

    await stores.create("other")
    await log.append("other", "a", [NewEvent("t", {}) for _ in range(3)])
    other = (await exported(log, "other"))[0]["eventId"]
    with pytest.raises(ImportRejected) as caught:
        await importer.check("other", events[:3], 7)
    assert caught.value.message == (
        f"line 7: globalPosition 1 holds another event in the store (eventId {other}, not "
        f"{events[0]['eventId']}); import into an empty store, or resume an interrupted import"
    )
