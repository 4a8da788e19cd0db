"""Retention and the archive (docs/lifecycle.md), against the private redis-server and fakeredis,
and the machine's PostgreSQL: what leaves Redis, what is read back from the archive, what is gone
for good and how a read says so, and the races of the boundary."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from broker import (
    MAX_HOT_SECONDS,
    Archive,
    EventLog,
    Filter,
    Lifecycle,
    LifecycleOptions,
    NewEvent,
    StoreAdmin,
    Unavailable,
    codec,
)
from broker import lifecycle as lifecycle_module
from broker.keys import StoreKeys

STREAMS = 7


def event(i: int) -> NewEvent:
    return NewEvent("order.placed" if i % 3 else "order.shipped", {"n": i, "pad": "x" * 40})


async def fill(log: EventLog, store: str, n: int, batch: int = 100) -> None:
    """n events over STREAMS streams, in batches of ``batch`` per stream."""
    for start in range(0, n, batch):
        stream = f"order-{(start // batch) % STREAMS}"
        size = min(batch, n - start)
        await log.append(store, stream, [event(start + j) for j in range(size)])


async def settle(lifecycle: Lifecycle) -> None:
    for _ in range(1000):
        if not await lifecycle.run_once():
            return
    raise AssertionError("the lifecycle never settled")


async def positions(log: EventLog, store: str, after: int = 0) -> list[int]:
    return [e.global_position async for p in log.scan(store, after=after) for e in p.events]


@pytest.fixture
def archived_log(redis: aioredis.Redis, archive: Archive) -> EventLog:
    return EventLog(redis, archive=archive)


OPTIONS = LifecycleOptions(copy_batch=700, trim_batch=500, delete_batch=400)


# -- without an archive: hot retention deletes, and reads say so ---------------------------------


async def test_hot_retention_without_archive_deletes_and_reads_say_so(
    redis: aioredis.Redis, log: EventLog, stores: StoreAdmin
) -> None:
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 10}})
    await fill(log, "shop", 50, batch=5)
    await settle(Lifecycle(redis, log, None, OPTIONS))

    k = StoreKeys("shop")
    assert await redis.xlen(k.log) == 10
    info = await stores.get("shop")
    assert (info.oldest, info.low, info.head_position, info.total_events) == (41, 41, 50, 10)
    piece = await log.after("shop", 0, 100)
    assert piece.truncated_before == 41
    assert [e.global_position for e in piece.events] == list(range(41, 51))
    assert (await log.after("shop", 45, 100)).truncated_before is None
    page = await log.query("shop", flt=None, from_position=1)
    assert page.truncated_before == 41 and len(page.events) == 10
    # A stream whose first events are gone: the read says which stream position is the first.
    part = await log.read_stream("shop", "order-1")
    assert part.version == 10  # order-1 got positions 6..10 and 41..45
    assert part.truncated_before == 5
    assert [e.global_position for e in part.events] == [41, 42, 43, 44, 45]
    # A stream all of whose events are gone (order-3: 16..20): its query says so too.
    gone = await log.query("shop", flt=Filter.parse("*", "order-3"))
    assert (gone.events, gone.truncated_before) == ([], 41)
    later = await log.query("shop", flt=Filter.parse("*", "order-3"), from_position=41)
    assert (later.events, later.truncated_before) == ([], None)
    # What the DCB query answers with (``gone_before``: a read after ``after``).
    assert await log.gone_before("shop", 0) == 41
    assert await log.gone_before("shop", 40) is None


async def test_the_longest_hot_age_is_a_round_that_keeps_everything(
    redis: aioredis.Redis, log: EventLog, stores: StoreAdmin
) -> None:
    """A deployment default of 99999999999 s failed every round (no date lies that long ago):
    it is now refused as a setting, and the longest age allowed, MAX_HOT_SECONDS (also the
    bound of a store's own), is a round that works and keeps every event."""
    await stores.create("shop")
    await fill(log, "shop", 20, batch=5)
    options = LifecycleOptions(hot_seconds=MAX_HOT_SECONDS)
    await settle(Lifecycle(redis, log, None, options))
    assert await redis.xlen(StoreKeys("shop").log) == 20


async def test_a_page_that_starts_where_history_is_gone_holds_the_first_kept_events(
    redis: aioredis.Redis, log: EventLog, stores: StoreAdmin
) -> None:
    """A limit is a number of events, not a window of positions: a stream read or a query of
    one stream that starts before the first kept event gets the first ``limit`` kept events
    (not an empty page that ends a client's paging), and says where history starts."""
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 10}})
    await fill(log, "shop", 50, batch=5)
    await settle(Lifecycle(redis, log, None, OPTIONS))
    part = await log.read_stream("shop", "order-1", limit=3)
    assert part.truncated_before == 5
    assert [e.global_position for e in part.events] == [41, 42, 43]
    part = await log.read_stream("shop", "order-1", start=2, end=6, limit=3)
    assert [e.global_position for e in part.events] == [41, 42]  # stream positions 5 and 6
    page = await log.query("shop", flt=Filter.parse("*", "order-1"), limit=3)
    assert [e.global_position for e in page.events] == [41, 42, 43] and page.has_more
    assert page.truncated_before == 41
    assert page.stream_truncated_before == 5
    page = await log.query("shop", flt=Filter.parse("*", "order-1"), from_position=42)
    assert page.truncated_before is None  # (it starts after what is gone)
    assert [e.global_position for e in page.events] == [42, 43, 44, 45]


async def test_store_times_are_those_of_the_oldest_kept_and_the_newest_event(
    redis: aioredis.Redis, log: EventLog, stores: StoreAdmin
) -> None:
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 10}})
    await fill(log, "shop", 50, batch=5)
    everything = await positions_and_times(log, "shop")
    await settle(Lifecycle(redis, log, None, OPTIONS))
    info = await stores.get("shop")
    assert info.oldest == 41
    assert (info.oldest_at, info.newest_at) == (everything[41], everything[50])


async def test_appends_to_a_trimmed_stream_keep_their_versions(
    redis: aioredis.Redis, log: EventLog, stores: StoreAdmin
) -> None:
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 3}})
    await log.append("shop", "s", [event(i) for i in range(10)])
    await settle(Lifecycle(redis, log, None, OPTIONS))
    result = await log.append("shop", "s", [event(10)], expected=10)
    assert (result.stream_version, result.last_position) == (11, 11)
    with pytest.raises(Exception, match="at version 11"):
        await log.append("shop", "s", [event(11)], expected=10)
    streams, _ = await log.list_streams("shop")
    assert streams[0].stream_position == 10


# -- with an archive: everything stays readable ---------------------------------------------


async def test_the_archive_keeps_everything_readable_in_order(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    log = archived_log
    stores = StoreAdmin(redis, archive)
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 1000}})
    await fill(log, "shop", 6000)
    await settle(Lifecycle(redis, log, archive, OPTIONS))

    k = StoreKeys("shop")
    assert await redis.xlen(k.log) == 1000
    info = await stores.get("shop")
    assert (info.low, info.oldest, info.archived, info.hot_events) == (5001, 1, 6000, 1000)
    assert await positions(log, "shop") == list(range(1, 6001))
    backward = [
        e.global_position async for p in log.scan("shop", direction="backward") for e in p.events
    ]
    assert backward == list(range(6000, 0, -1))
    for s in range(STREAMS):
        part = await log.read_stream("shop", f"order-{s}", limit=1000)
        assert [int(e.json.split('"streamPosition":')[1].split(",")[0]) for e in part.events] == (
            list(range(len(part.events)))
        )
        assert part.truncated_before is None
        back = await log.read_stream("shop", f"order-{s}", direction="backward", limit=1000)
        assert back.events == list(reversed(part.events))
    page = await log.query(
        "shop", flt=Filter.parse("*", "order-3"), from_position=100, to_position=5500
    )
    assert page.events and all(100 <= e.global_position <= 5500 for e in page.events)
    assert all(e.stream_id == "order-3" for e in page.events)
    # The stream's version survives its events leaving Redis.
    result = await log.append("shop", "order-0", [event(0)], expected=900)
    assert result.stream_version == 901


async def test_the_copy_tells_the_trim_what_it_read(
    redis: aioredis.Redis,
    archived_log: EventLog,
    archive: Archive,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No page of the copy holds both the last position that leaves Redis (below the hot bound)
    and the one after it, so the trim that follows is told what the pages below the bound hold
    and never reads those events from Redis again (``summarize`` of a fresh XRANGE)."""
    read_again: list[int] = []
    summarize = lifecycle_module.summarize

    def counted(entries: list, first: int, bound: int, archived: int | None) -> object:
        read_again.append(len(entries))
        return summarize(entries, first, bound, archived)

    monkeypatch.setattr(lifecycle_module, "summarize", counted)
    stores = StoreAdmin(redis, archive)
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 1000}})
    await fill(archived_log, "shop", 6000)  # pages of 700: the hot bound (5001) is not at an end
    await settle(Lifecycle(redis, archived_log, archive, OPTIONS))
    assert await redis.xlen(StoreKeys("shop").log) == 1000
    assert await positions(archived_log, "shop") == list(range(1, 6001))
    assert read_again == []


async def test_the_oldest_event_time_is_read_from_the_archive(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    stores = StoreAdmin(redis, archive)
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 100}})
    await fill(archived_log, "shop", 100)
    await asyncio.sleep(0.02)  # the first events' time differs from what Redis keeps
    await fill(archived_log, "shop", 900)
    everything = await positions_and_times(archived_log, "shop")
    assert everything[1] < everything[901]
    await settle(Lifecycle(redis, archived_log, archive, OPTIONS))
    info = await stores.get("shop")
    assert (info.low, info.oldest) == (901, 1)  # the oldest is in the archive only
    assert (info.oldest_at, info.newest_at) == (everything[1], everything[1000])
    assert info.bytes > 0


async def positions_and_times(log: EventLog, store: str) -> dict[int, str]:
    return {
        e.global_position: codec.created_at_text(e.json)
        async for piece in log.scan(store)
        for e in piece.events
    }


async def test_a_reader_crossing_the_boundary_while_it_moves_misses_nothing(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    """The race of docs/lifecycle.md: a reader is between pages while archiving and trimming
    move the boundary past its cursor; its next page comes from the archive."""
    log = archived_log
    await StoreAdmin(redis, archive).create("shop", settings={"hotRetention": {"maxEvents": 50}})
    await fill(log, "shop", 3000)
    lifecycle = Lifecycle(redis, log, archive, OPTIONS)
    seen: list[int] = []
    cursor = 0
    while True:
        piece = await log.after("shop", cursor, 250)
        if not piece.events:
            break
        assert piece.truncated_before is None
        seen += [e.global_position for e in piece.events]
        cursor = seen[-1]
        await lifecycle.run_once()  # the boundary moves between every two pages
    assert seen == list(range(1, 3001))
    assert int(await redis.hget(StoreKeys("shop").meta, "low")) > 1


async def test_a_copy_cut_short_repeats_nothing_and_skips_nothing(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    """A pod that committed a copy and died before recording it in Redis: the next pod copies
    from the archive's own highest position on."""
    log = archived_log
    await StoreAdmin(redis, archive).create("shop", settings={"hotRetention": {"maxEvents": 10}})
    await fill(log, "shop", 2000)
    first = Lifecycle(redis, log, archive, OPTIONS)
    store = await log.bounds("shop")
    archive_id = await archive.store_id(store.uid, "shop", create=True)
    assert archive_id is not None
    await first._copy("shop", store.uid, 0, 1, 2000, 1)  # committed; meta says 700
    await redis.hset(StoreKeys("shop").meta, "archived", 0)  # ... as if the mark was lost
    second = Lifecycle(redis, log, archive, OPTIONS)  # another pod, knowing nothing
    await settle(second)
    stats = await archive.stats(archive_id)
    assert (stats.events, stats.oldest, stats.newest) == (2000, 1, 2000)
    assert await positions(log, "shop") == list(range(1, 2001))


async def test_two_pods_never_copy_twice(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    log = archived_log
    await StoreAdmin(redis, archive).create("shop")
    await fill(log, "shop", 3000)
    pods = [
        Lifecycle(redis, log, archive, LifecycleOptions(copy_batch=300, owner=f"pod-{i}"))
        for i in range(3)
    ]
    for _ in range(30):
        await asyncio.gather(*(p.run_once() for p in pods))
        await redis.delete(StoreKeys("shop").lifecycle_lease)  # leases expire at every turn
    store = await log.bounds("shop")
    archive_id = await archive.store_id(store.uid, "shop")
    assert archive_id is not None
    stats = await archive.stats(archive_id)
    assert (stats.events, stats.oldest, stats.newest) == (3000, 1, 3000)


async def test_an_archive_that_is_down_pauses_archiving_and_fails_only_cold_reads(
    redis: aioredis.Redis, archive_url: str
) -> None:
    good = Archive(archive_url)
    log = EventLog(redis, archive=good)
    try:
        await StoreAdmin(redis, good).create("shop", settings={"hotRetention": {"maxEvents": 10}})
        await fill(log, "shop", 100, batch=10)
        await settle(Lifecycle(redis, log, good, OPTIONS))
    finally:
        await good.close()
    down = Archive("postgresql://postgres@127.0.0.1:9/nowhere", seconds=0.5)
    log = EventLog(redis, archive=down)
    lifecycle = Lifecycle(redis, log, down, OPTIONS)
    await log.append("shop", "s", [event(1)])  # appends go on
    assert not await lifecycle.run_once()  # pauses, counted, never trims what is not archived
    assert lifecycle.stats.errors == 1
    assert int(await redis.hget(StoreKeys("shop").meta, "low")) == 91
    assert [e.global_position for e in (await log.after("shop", 95, 10)).events] == [
        96,
        97,
        98,
        99,
        100,
        101,
    ]
    with pytest.raises(Unavailable):
        await log.after("shop", 0, 10)


# -- retention everywhere ------------------------------------------------------------------------


async def test_max_stream_size_deletes_the_oldest_everywhere(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    log = archived_log
    stores = StoreAdmin(redis, archive)
    await stores.create("shop")
    await fill(log, "shop", 1000)
    await settle(Lifecycle(redis, log, archive, OPTIONS))
    size = (await stores.get("shop")).bytes
    assert size > 0
    await redis.hset(StoreKeys("shop").meta, "settings", f'{{"maxStreamSizeBytes": {size // 4}}}')
    await settle(Lifecycle(redis, log, archive, OPTIONS))
    info = await stores.get("shop")
    assert 0 < info.bytes <= size // 4
    assert 200 <= info.total_events <= 260
    piece = await log.after("shop", 0, 2000)
    assert piece.truncated_before == info.oldest
    assert [e.global_position for e in piece.events] == list(range(info.oldest, 1001))
    archive_id = await archive.store_id(info.uid, "shop")
    assert archive_id is not None
    assert (await archive.stats(archive_id)).oldest == info.oldest
    # Each stream lost its oldest events, in the archive too: its reads start at its first
    # kept event, whether it is archived or still in Redis.
    for stream in (f"order-{i}" for i in range(STREAMS)):
        everything = await log.read_stream("shop", stream, limit=1000)
        kept = [e.global_position for e in everything.events]
        assert kept == sorted(kept) and all(p >= info.oldest for p in kept)
        if not kept:  # (all its events were older than the kept ones)
            assert everything.truncated_before == everything.version
            continue
        part = await log.read_stream("shop", stream, limit=3)
        assert [e.global_position for e in part.events] == kept[:3]
        assert part.truncated_before == everything.truncated_before
        assert part.truncated_before is not None and part.truncated_before > 0


async def test_reads_wholly_before_the_kept_history_say_where_it_starts(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    """A read whose whole range lies before what is kept still says the history it asked for is
    gone and where the kept part starts: a store query ending before the oldest position (either
    direction), and a stream read of positions below the stream's first kept event when that
    event is archived (not the first one Redis holds)."""
    log = archived_log
    stores = StoreAdmin(redis, archive)
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 100}})
    await fill(log, "shop", 1000)
    await settle(Lifecycle(redis, log, archive, OPTIONS))
    size = (await stores.get("shop")).bytes
    settings = f'{{"hotRetention": {{"maxEvents": 100}}, "maxStreamSizeBytes": {size // 2}}}'
    await redis.hset(StoreKeys("shop").meta, "settings", settings)
    await settle(Lifecycle(redis, log, archive, OPTIONS))
    oldest = (await stores.get("shop")).oldest
    assert 300 < oldest < 900
    for direction in ("forward", "backward"):
        page = await log.query(
            "shop", flt=None, from_position=1, to_position=oldest - 100, direction=direction
        )
        assert (page.events, page.truncated_before) == ([], oldest), direction
    in_archive = 0
    for stream in (f"order-{i}" for i in range(STREAMS)):
        everything = await log.read_stream("shop", stream, limit=1000)
        if not everything.events:
            continue
        first = everything.truncated_before
        if first is None:
            continue  # (nothing of it is gone)
        in_redis = int(await redis.hget(StoreKeys("shop").offsets, stream) or 0)
        in_archive += first < in_redis
        below = await log.read_stream("shop", stream, start=0, end=first - 1)
        assert (below.events, below.truncated_before) == ([], first), stream
        back = await log.read_stream("shop", stream, direction="backward", start=first - 1)
        assert (back.events, back.truncated_before) == ([], first), stream
    assert in_archive  # (the case this is about: the first kept event lies in the archive)


async def test_a_size_limit_met_before_archiving_keeps_the_newest_up_to_it(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    """Events past ``maxStreamSizeBytes`` before they were ever archived leave for good, and
    their bytes leave the store's count with them: the log keeps the newest events up to the
    limit (the copy, starting past them, must not make them look archived)."""
    log = archived_log
    stores = StoreAdmin(redis, archive)
    await stores.create("shop")
    await redis.hset(StoreKeys("shop").meta, "settings", '{"maxStreamSizeBytes": 17000}')
    await fill(log, "shop", 1000)
    await settle(Lifecycle(redis, log, archive, OPTIONS))
    info = await stores.get("shop")
    kept = [e async for p in log.scan("shop") for e in p.events]
    assert [e.global_position for e in kept] == list(range(info.oldest, 1001))
    sizes = [lifecycle_module.body_size(e.json) for e in kept]
    # The count is true, and as many of the newest events are kept as fit (about 63 of ~270
    # bytes; with the bytes of events deleted unarchived left counted, all but one went).
    assert info.bytes == sum(sizes) <= 17000 < sum(sizes) + max(sizes)
    archive_id = await archive.store_id(info.uid, "shop")
    assert archive_id is not None and (await archive.stats(archive_id)).oldest >= info.oldest


async def test_retention_period_deletes_old_events_everywhere(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    log = archived_log
    stores = StoreAdmin(redis, archive)
    await stores.create("shop", settings={"retentionPeriodDays": 1.5 / 86400})  # 1.5 s
    await fill(log, "shop", 300)
    await settle(Lifecycle(redis, log, archive, OPTIONS))
    assert (await stores.get("shop")).oldest == 1
    await asyncio.sleep(2.0)
    await log.append("shop", "late", [event(0)])
    await settle(Lifecycle(redis, log, archive, OPTIONS))
    info = await stores.get("shop")
    assert info.oldest == 301 and info.total_events == 1
    piece = await log.after("shop", 0, 10)
    assert (piece.truncated_before, [e.global_position for e in piece.events]) == (301, [301])


class ForgetfulArchive(Archive):
    """An archive that refuses to delete a store's events while ``down``."""

    down = False

    async def forget(self, uid: str, batch: int = 50_000) -> None:
        if self.down:
            raise Unavailable("the archive refused: test")
        await super().forget(uid, batch)


async def test_a_store_deleted_while_the_archive_is_down_loses_its_archive_later(
    redis: aioredis.Redis, archive_url: str
) -> None:
    """The delete answered 503 after the store had left Redis, and its archived events stayed
    for good (a retry found no store). Now the store goes at once and its archived events as
    soon as the archive answers: the intent is recorded, and a lifecycle round carries it out."""
    from broker.keys import ARCHIVE_FORGET

    archive = ForgetfulArchive(archive_url)
    try:
        log = EventLog(redis, archive=archive)
        stores = StoreAdmin(redis, archive)
        await stores.create("shop", settings={"hotRetention": {"maxEvents": 5}})
        await fill(log, "shop", 200)
        lifecycle = Lifecycle(redis, log, archive, OPTIONS)
        await settle(lifecycle)
        uid = (await stores.get("shop")).uid
        archive.down = True
        await stores.delete("shop")  # answered: the store is gone
        assert await stores.page() == ([], 0)
        assert await archive.store_id(uid, "shop") is not None
        assert await redis.smembers(ARCHIVE_FORGET) == {uid}
        await lifecycle.run_once()  # still down: it waits, counted
        assert lifecycle.stats.errors == 1 and await archive.store_id(uid, "shop") is not None
        archive.down = False
        await lifecycle.run_once()
        assert await redis.smembers(ARCHIVE_FORGET) == set()
        fresh = Archive(archive_url)  # a cold cache: ask PostgreSQL itself
        try:
            assert await fresh.store_id(uid, "shop") is None
        finally:
            await fresh.close()
    finally:
        await archive.close()


class UnreadableArchive(Archive):
    """An archive whose events cannot be read while ``down``."""

    down = False

    async def after(self, *args: object, **kwargs: object) -> list[str]:  # type: ignore[override]
        if self.down:
            raise Unavailable("the archive refused: test")
        return await super().after(*args, **kwargs)  # type: ignore[arg-type]


async def test_store_info_and_the_list_answer_while_the_archive_is_down(
    redis: aioredis.Redis, archive_url: str
) -> None:
    """A store's statistics need no archived event but the oldest one's time: with the archive
    down that time is unknown (None, or what was read before), and neither the store nor the
    list of every store answers 503 for it."""
    archive = UnreadableArchive(archive_url)
    try:
        log = EventLog(redis, archive=archive)
        stores = StoreAdmin(redis, archive)
        await stores.create("shop", settings={"hotRetention": {"maxEvents": 5}})
        await stores.create("other")
        await fill(log, "shop", 200)
        await log.append("other", "s", [event(0)])
        await settle(Lifecycle(redis, log, archive, OPTIONS))
        archive.down = True
        cold = StoreAdmin(redis, archive)  # (nothing read before)
        info = await cold.get("shop")
        assert (info.oldest, info.oldest_at, info.total_events) == (1, None, 200)
        assert [s.name for s in (await cold.page())[0]] == ["other", "shop"]
        archive.down = False
        oldest_at = (await stores.get("shop")).oldest_at
        assert oldest_at is not None
        archive.down = True
        assert (await stores.get("shop")).oldest_at == oldest_at  # remembered
    finally:
        await archive.close()


async def test_deleting_a_store_deletes_its_archive(
    redis: aioredis.Redis, archived_log: EventLog, archive: Archive
) -> None:
    stores = StoreAdmin(redis, archive)
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 5}})
    await fill(archived_log, "shop", 200)
    await settle(Lifecycle(redis, archived_log, archive, OPTIONS))
    uid = (await stores.get("shop")).uid
    assert await archive.store_id(uid, "shop") is not None
    await stores.delete("shop")
    fresh = Archive.__new__(Archive)  # a cold cache: ask PostgreSQL itself
    fresh.__init__(archive._url)  # type: ignore[misc]
    try:
        assert await fresh.store_id(uid, "shop") is None
    finally:
        await fresh.close()
    await stores.create("shop")
    await archived_log.append("shop", "s", [event(0)])
    assert await positions(archived_log, "shop") == [1]
