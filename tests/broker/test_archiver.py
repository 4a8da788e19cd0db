"""The archive copy's own parts (broker/archiver.py, scripts/trim.lua): log entries as binary COPY
rows that PostgreSQL reads back exactly, a trim that refuses a wrong account of what it trims,
and a copy cut short mid-step that leaves A at the last commit and no task behind."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from broker import (
    Archive,
    EventLog,
    Lifecycle,
    LifecycleOptions,
    NewEvent,
    StoreAdmin,
    archiver,
    codec,
    runs,
)
from broker.archive import CopyConflict
from broker.archiver import Held, Sizes, encode, summarize
from broker.errors import Unavailable
from broker.filters import Query
from broker.keys import StoreKeys
from broker.redis import _LaneConnection, bulk_lane, lane

MiB = 1024 * 1024


def body(stream: str, kind: str, created: str, extra: str = "") -> bytes:
    return (
        f'"streamId":"{stream}","eventId":"e","type":"{kind}","data":{{"x":"\\"quoted\\""}}'
        f'{extra},"schemaVersion":1,"transactionId":"t","createdAt":"{created}"}}'
    ).encode()


async def test_entries_go_to_postgresql_as_the_log_holds_them(
    archive: Archive, archive_url: str
) -> None:
    """Every shape an entry can have: tags, none, the first format (whole JSON), createdAt with
    and without milliseconds or an offset, and text outside ASCII."""
    created = [
        "2026-01-02T03:04:05.678Z",
        "2026-01-02T03:04:05.679Z",
        "2026-01-02T03:04:05Z",
        "2026-01-02T05:04:05.5+02:00",
        "2026-01-02T03:04:06.000Z",
    ]
    whole = "{" + '"globalPosition":5,"streamPosition":0,' + body("s-ü", "b", created[4]).decode()
    u = "s-ü".encode()
    entries = [
        [b"1-0", [b"s", b"s-1", b"t", b"a", b"p", b"0", b"e", body("s-1", "a", created[0])]],
        [b"2-0", [b"s", b"s-1", b"t", b"a", b"p", b"1", b"g", b"t1,t2", b"e",
                  body("s-1", "a", created[1])]],
        [b"3-0", [b"s", u, b"t", b"b", b"p", b"7", b"e", body("s-ü", "b", created[2])]],
        [b"4-0", [b"s", b"s-1", b"t", b"a", b"p", b"2", b"g", b"t2", b"e",
                  body("s-1", "a", created[3])]],
        [b"5-0", [b"s", u, b"t", b"b", b"e", whole.encode()]],
    ]  # fmt: skip
    store = await archive.store_id("uid-1", "shop", create=True)
    assert store is not None
    page = encode(store, 1, entries)
    assert (page.held.first, page.held.last, page.held.count) == (1, 5, 5)
    assert page.held.streams == {b"s-1": 3, "s-ü".encode(): 2}
    assert page.held.types == {b"a", b"b"} and page.held.tags == {b"t1", b"t2"}
    await archive.copy(store, 1, 5, page.data)

    conn = await asyncpg.connect(archive_url)
    try:
        rows = await conn.fetch("SELECT * FROM deltagate_runs ORDER BY first_position")
    finally:
        await conn.close()
    # A run per stream in the block, a new one where stream positions do not follow on (they
    # always do in a log; not in these made-up entries), each event exactly as the log held it.
    held = [(r["stream_id"], r["first_position"], r["last_position"], r["count"]) for r in rows]
    assert held == [
        ("s-1", 1, 4, 3),
        ("s-ü", 3, 3, 1),
        ("s-ü", 5, 5, 1),
    ]
    assert rows[0]["types"] == ["a"] and rows[0]["tags"] == ["t1", "t2"]
    assert rows[1]["types"] == ["b"] and rows[1]["tags"] is None
    assert rows[0]["created_min"] == datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)  # created[3]
    assert rows[0]["created_max"] == datetime.fromisoformat(created[1])
    events = sorted((e for r in rows for e in runs.decode(r)), key=lambda e: e.position)
    assert [(e.position, e.stream_position, e.type, e.tags) for e in events] == [
        (1, 0, "a", ()),
        (2, 1, "a", ("t1", "t2")),
        (3, 7, "b", ()),
        (4, 2, "a", ("t2",)),
        (5, 0, "b", ()),
    ]
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    assert [epoch + timedelta(microseconds=e.created) for e in events] == [
        datetime.fromisoformat(c) for c in created
    ]
    assert [e.body.encode() for e in events[:4]] == [e[1][-1] for e in entries[:4]]
    assert events[4].body == body("s-ü", "b", created[4]).decode()  # positions cut off
    # Read back through the archive, the JSON is the event as served.
    (event,) = await archive.after(store, 3, 4, 10)
    assert codec.event_of(event.json)["globalPosition"] == 4


def test_runs_built_a_column_at_a_time_are_the_rows_built_event_by_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The encoder's fast path (a stream's events of a block as one run, ``Encoder._run``) writes
    the very bytes of the event-by-event path, whatever the entries: streams interleaved within a
    block, appends of one and of many events, types mixed within a run, createdAt in the
    append's shape, in others and before 2000 (a negative time), pages that start and end
    inside blocks."""
    rng = random.Random(18)
    streams, kinds = [b"s-1", b"s-2", "s-ü".encode()], [b"a", b"b", b"order.placed"]
    shapes = [
        "2026-01-02T03:04:{s:02}.{ms:03}Z",
        "2026-01-02T03:04:{s:02}Z",
        "2026-01-02T05:04:{s:02}.5+02:00",
        "1999-12-31T23:59:{s:02}.{ms:03}Z",
    ]
    counts = dict.fromkeys(streams, 0)
    entries: list[list[object]] = []
    while len(entries) < 5000:
        stream = rng.choice(streams)
        shape = rng.choice(shapes) if rng.random() < 0.2 else shapes[0]
        created = shape.format(s=rng.randrange(60), ms=rng.randrange(1000))
        for _ in range(rng.choice((1, 1, 3, 100))):  # an append: one time for all its events
            kind = rng.choice(kinds) if rng.random() < 0.1 else kinds[2]
            position = str(counts[stream]).encode()
            counts[stream] += 1
            fields = [b"s", stream, b"t", kind, b"p", position, b"e"]
            fields.append(body(stream.decode(), kind.decode(), created))
            entries.append([f"{len(entries) + 1}-0".encode(), fields])

    def pages() -> list[str]:  # (digests: pytest's account of two unequal MiB would take long)
        return [
            hashlib.sha256(b"".join(encode(7, first, entries[first - 1 : last]).data)).hexdigest()
            for first, last in ((1, 700), (701, 2048), (2049, 2049), (2050, len(entries)))
        ]

    fast = pages()
    taken: list[int] = []
    run = archiver.Encoder._run

    def counted(self: archiver.Encoder, *args: object) -> bool:
        taken.append(run(self, *args))  # type: ignore[arg-type]
        return taken[-1]

    monkeypatch.setattr(archiver.Encoder, "_run", counted)
    pages()
    assert taken and all(taken)  # the fast path was taken every time ...
    monkeypatch.setattr(archiver.Encoder, "_run", lambda self, *args: False)
    assert pages() == fast  # ... and wrote what the other path writes


def test_a_page_is_copied_in_pieces_of_whole_runs() -> None:
    """A page's COPY data comes in pieces of about ``runs.CHUNK`` bytes of bodies, each ending
    where a run ends: joined, they are the COPY of the whole page."""
    entries = [
        [
            f"{n}-0".encode(),
            [b"s", b"s-%d" % (n % 7), b"t", b"a", b"p", b"%d" % (n // 7), b"e",
             body("s", "a", "2026-01-02T03:04:05.678Z", ',"note":"%s"' % ("x" * 300))],
        ]
        for n in range(1, 5001)
    ]  # fmt: skip
    page = encode(7, 1, entries)
    sizes = [len(piece) for piece in page.data]
    assert len(sizes) > 3 and page.size == sum(sizes)
    assert page.data[0].startswith(runs.HEADER) and page.data[-1].endswith(runs.TRAILER)
    # A piece holds whole runs: at most one run (here up to 147 events) past the threshold.
    assert all(runs.CHUNK <= size < runs.CHUNK + 147 * 500 for size in sizes[:-1])
    whole = runs.Runs(7)
    created = archiver._micros(b"2026-01-02T03:04:05.678Z", {})
    for n, (_, fields) in enumerate(entries, 1):
        whole.add(n, fields[1], int(fields[5]), fields[3], created, [], fields[7])
    # The same rows joined from pieces of any size: one piece, or one per run; the encoder's,
    # written block by block, are those of the rows added one event at a time.
    one, many = whole.chunks(size=1 << 40), whole.chunks(size=1)
    assert len(one) == 1 and len(many) == len(whole.runs()) + 1
    assert b"".join(many) == one[0] == b"".join(page.data)
    assert page.held.streams == {b"s-%d" % k: len(range(k or 7, 5001, 7)) for k in range(7)}


async def test_a_copy_that_lost_a_race_writes_nothing(archive: Archive) -> None:
    store = await archive.store_id("uid-1", "shop", create=True)
    assert store is not None
    one = [
        [
            b"1-0",
            [b"s", b"s", b"t", b"a", b"p", b"0", b"e", body("s", "a", "2026-01-02T03:04:05.678Z")],
        ]
    ]
    two = [[f"{i}-0".encode(), one[0][1]] for i in (1, 2)]  # fmt: skip
    await archive.copy(store, 1, 1, encode(store, 1, one).data)
    with pytest.raises(CopyConflict):
        await archive.copy(store, 1, 2, encode(store, 1, two).data)
    assert (await archive.stats(store)).events == 1  # the whole page refused, not half of it
    (event,) = await archive.after(store, 0, 10, 10)
    assert event.global_position == 1


async def test_trim_refuses_a_wrong_account_and_changes_nothing(
    redis: aioredis.Redis, log: EventLog, stores: StoreAdmin
) -> None:
    """The script trusts no one: per stream, the counted events must be exactly the stream
    index's entries up to the last position, and the counts must add up."""
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 2}})
    await log.append("shop", "a", [NewEvent("x", {"n": i}) for i in range(3)])
    await log.append("shop", "b", [NewEvent("y", {"n": i}) for i in range(3)])
    lifecycle = Lifecycle(redis, log, None, LifecycleOptions())
    k = StoreKeys("shop")
    uid = (await stores.get("shop")).uid
    before = await redis.xlen(k.log)

    async def trim(held: Held) -> list[object]:
        return list(
            await lifecycle._trim(
                keys=[k.meta, k.log, k.offsets, k.times],
                args=[uid, 1, held.last, 0, 1, 5, "0", 0, k.stream_prefix, k.type_prefix,
                      k.tag_prefix, *held.arguments()],
            )
        )  # fmt: skip

    wrong = [
        Held(1, 4, {b"a": 4}, {b"x"}, set()),  # a has 3 events
        Held(1, 4, {b"a": 2, b"b": 2}, {b"x", b"y"}, set()),  # a has 3 up to 4, not 2
        Held(1, 4, {b"a": 3}, {b"x"}, set()),  # b's event 4 is not counted
    ]
    for held in wrong:
        reply = await trim(held)
        assert reply[0] == -2, held
    assert await redis.xlen(k.log) == before
    assert int(await redis.hget(k.meta, "low") or 1) == 1
    right = Held(1, 4, {b"a": 3, b"b": 1}, {b"x", b"y"}, set())
    assert (await trim(right))[:2] == [5, 4]
    assert await redis.xlen(k.log) == 2
    assert await redis.lrange(k.stream("b"), 0, -1) == ["5", "6"]
    assert await redis.lrange(k.type_prefix + "y", 0, -1) == ["5", "6"]
    assert await redis.llen(k.type_prefix + "x") == 0


async def test_what_the_pod_reads_for_trim_is_what_the_copy_saw(
    redis: aioredis.Redis, log: EventLog, stores: StoreAdmin
) -> None:
    await stores.create("shop")
    await log.append("shop", "a", [NewEvent("x", {"n": 1}, tags=["t1", "t2"])])
    await log.append("shop", "b", [NewEvent("y", {"n": 2})])
    raw = await redis.execute_command("XRANGE", StoreKeys("shop").log, "-", "+", NEVER_DECODE=True)
    seen = summarize(raw, 1, 1, 0)
    copied = encode(1, 1, raw).held
    assert (seen.first, seen.last, seen.streams, seen.types, seen.tags) == (
        copied.first,
        copied.last,
        copied.streams,
        copied.types,
        copied.tags,
    )
    assert seen.gone == 0  # archived up to 0, retention bound 1: nothing leaves for good
    assert summarize(raw, 1, 1, None).gone == sum(len(e[1][-1]) for e in raw)


async def archiving(
    redis: aioredis.Redis, log: EventLog, archive: Archive, events: int, page: int
) -> Lifecycle:
    """A store "shop" that keeps one event hot, ``events`` events in one stream, and a
    lifecycle copying pages of ``page``."""
    await StoreAdmin(redis, archive).create("shop", settings={"hotRetention": {"maxEvents": 1}})
    await log.append("shop", "s", [NewEvent("x", {"n": i}) for i in range(events)])
    return Lifecycle(
        redis, EventLog(redis, archive=archive), archive, LifecycleOptions(copy_batch=page)
    )


async def positions_read(redis: aioredis.Redis, archive: Archive, events: int) -> list[int]:
    """The store's positions as reads see them, page after page across the boundary."""
    reader, read = EventLog(redis, archive=archive), []
    while len(read) < events and (page := await reader.read_after("shop", len(read), events)):
        read += [e.global_position for e in page]
    return read


def test_pages_are_sized_by_the_bytes_of_their_events() -> None:
    sizes = Sizes.first(10_000, 8 * MiB, 300)
    assert sizes.events == 10_000  # small events: as many as a page may hold
    sizes = Sizes.first(10_000, 8 * MiB, MiB)
    assert sizes.events == 8
    sizes.saw(8, 80)  # far smaller than thought: twice as many next, not 10,000 at once
    assert sizes.events == 16
    sizes.saw(16, 64 * MiB)  # 4 MiB each: two fill the budget
    assert sizes.events == 2
    sizes.saw(2, 40 * MiB)  # one is over it: one at a time
    assert sizes.events == 1
    # A page cut short (the head, the hot bound, the step's end) does not shrink the next.
    sizes = Sizes.first(10_000, 8 * MiB, 300)
    sizes.saw(5, 5 * 330)
    assert sizes.events == 10_000


class RecordingArchive(Archive):
    """Remembers the events and bytes of each page copied."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.pages: list[tuple[int, int]] = []

    async def copy(self, store: int, first: int, last: int, data: Sequence[bytes]) -> None:
        self.pages.append((last - first + 1, sum(map(len, data))))
        await super().copy(store, first, last, data)


async def test_a_store_of_large_events_is_copied_in_pages_of_few(
    redis: aioredis.Redis, log: EventLog, archive_url: str
) -> None:
    """A page holds about ``copy_bytes`` of bodies, however many events that is: large events
    do not make the pod hold ``copy_batch`` of them at once, small ones go ``copy_batch`` at a
    time again."""
    archive = RecordingArchive(archive_url)
    try:
        await StoreAdmin(redis, archive).create("shop", settings={"hotRetention": {"maxEvents": 1}})
        for _ in range(6):
            big = [NewEvent("x", {"n": i, "pad": "x" * 100_000}) for i in range(10)]
            await log.append("shop", "s", big)
        options = LifecycleOptions(copy_batch=1000, copy_bytes=MiB)
        lifecycle = Lifecycle(redis, EventLog(redis, archive=archive), archive, options)
        while await lifecycle.run_once():
            pass
        assert sum(events for events, _ in archive.pages) == 60
        assert max(size for _, size in archive.pages) < 2 * MiB
        assert max(events for events, _ in archive.pages) <= 20
        archive.pages.clear()
        await log.append("shop", "s", [NewEvent("x", {"n": i}) for i in range(5000)])
        while await lifecycle.run_once():
            pass
        assert sum(events for events, _ in archive.pages) == 5000
        assert max(events for events, _ in archive.pages) == 1000
        assert await positions_read(redis, archive, 5060) == list(range(1, 5061))
    finally:
        await archive.close()


class FailingArchive(Archive):
    """The archive goes away after ``pages`` copies."""

    def __init__(self, url: str, pages: int) -> None:
        super().__init__(url)
        self.pages = pages

    async def copy(self, store: int, first: int, last: int, data: Sequence[bytes]) -> None:
        if self.pages == 0:
            await asyncio.sleep(0.05)  # the read-ahead is under way meanwhile
            raise Unavailable("the archive is unavailable: test")
        self.pages -= 1
        await super().copy(store, first, last, data)


async def test_an_archive_lost_mid_step_keeps_a_at_the_last_commit(
    redis: aioredis.Redis, log: EventLog, archive_url: str
) -> None:
    archive = FailingArchive(archive_url, pages=2)
    try:
        lifecycle = await archiving(redis, log, archive, 1000, 300)
        tasks = len(asyncio.all_tasks())
        await lifecycle.run_once()  # the step fails on the third page, counted
        assert lifecycle.stats.errors == 1
        assert len(asyncio.all_tasks()) == tasks  # the read-ahead was cancelled and awaited
        meta = StoreKeys("shop").meta
        assert int(await redis.hget(meta, "archived")) == 600
        # The pages archived before the failure may have left Redis (they did, while the next
        # was copied); nothing after A.
        assert 1 <= int(await redis.hget(meta, "low") or 1) <= 601
        assert await positions_read(redis, archive, 1000) == list(range(1, 1001))
        archive.pages = 10
        for _ in range(10):
            if not await lifecycle.run_once():
                break
        assert int(await redis.hget(meta, "archived")) == 1000
        assert int(await redis.hget(meta, "low")) == 1000
        uid = (await StoreAdmin(redis).get("shop")).uid
        store = await archive.store_id(uid, "shop")
        assert store is not None
        stats = await archive.stats(store)
        assert (stats.events, stats.oldest, stats.newest) == (1000, 1, 1000)
    finally:
        await archive.close()


async def test_redis_lost_under_a_page_read_keeps_a_at_the_last_commit(
    real_redis: aioredis.Redis, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages' own connection (``bulk_lane``) lost while a page's XRANGE waits for its reply:
    the step fails as a lost Redis (counted), after the pages before it committed; nothing is
    left running, every event reads, and the next step connects again and copies the rest."""
    lifecycle = await archiving(real_redis, EventLog(real_redis), archive, 1000, 300)
    bulk = bulk_lane(real_redis)
    assert bulk is not None and bulk is not lane(real_redis)
    sent: list[str] = []
    sending = _LaneConnection.send

    def send(conn: _LaneConnection, command: tuple) -> asyncio.Future:
        answer = sending(conn, command)
        if command[0] == "XRANGE":
            sent.append(command[2])
            if len(sent) == 3:  # the third page's, before its reply came
                conn.transport.abort()
        return answer

    monkeypatch.setattr(_LaneConnection, "send", send)
    tasks = len(asyncio.all_tasks())
    await lifecycle.run_once()
    assert lifecycle.stats.errors == 1
    assert len(asyncio.all_tasks()) == tasks
    meta = StoreKeys("shop").meta
    assert int(await real_redis.hget(meta, "archived")) == 600  # pages 1 and 2
    assert await positions_read(real_redis, archive, 1000) == list(range(1, 1001))
    for _ in range(10):
        if not await lifecycle.run_once():
            break
    assert lifecycle.stats.errors == 1
    assert int(await real_redis.hget(meta, "archived")) == 1000
    assert sent[:4] == ["1-0", "301-0", "601-0", "601-0"]  # the lost read, read again
    assert await positions_read(real_redis, archive, 1000) == list(range(1, 1001))


OLD_LAYOUT = """
CREATE TABLE deltagate_stores (id serial PRIMARY KEY, uid text NOT NULL UNIQUE, name text NOT NULL);
CREATE TABLE deltagate_events (
    store_id integer NOT NULL, position bigint NOT NULL, stream_id text NOT NULL,
    stream_position bigint NOT NULL, type text NOT NULL, created_at timestamptz NOT NULL,
    body text NOT NULL, tags text[], PRIMARY KEY (store_id, position));
"""


async def test_an_archive_of_rows_per_event_becomes_runs_on_first_open(archive_url: str) -> None:
    """What an earlier deltagate archived (a row per event) is read after the upgrade as before:
    converted once, on the first open, the old table gone."""
    created = "2026-01-02T03:04:05.678Z"
    conn = await asyncpg.connect(archive_url)
    try:
        await conn.execute(OLD_LAYOUT)
        await conn.execute("INSERT INTO deltagate_stores (uid, name) VALUES ('u1', 'shop')")
        await conn.executemany(
            "INSERT INTO deltagate_events VALUES (1, $1, $2, $3, $4, $5, $6, $7)",
            [
                (p, f"s-{p % 2}", p // 2, "a" if p < 3000 else "b",
                 datetime.fromisoformat(created), body(f"s-{p % 2}", "a", created).decode(),
                 ["t1"] if p == 2500 else None)
                for p in range(1, 6001)
            ],
        )  # fmt: skip
    finally:
        await conn.close()
    archive = Archive(archive_url)
    try:
        store = await archive.store_id("u1", "shop")
        assert store == 1
        stats = await archive.stats(store)
        assert (stats.events, stats.oldest, stats.newest) == (6000, 1, 6000)
        assert await archive.highest(store) == 6000
        events = await archive.after(store, 0, 6000, 6000)
        assert [e.global_position for e in events] == list(range(1, 6001))
        assert codec.event_of(events[4].json)["streamPosition"] == 2
        assert [e.global_position for e in await archive.stream(store, "s-1", 10, 12)] == [
            21,
            23,
            25,
        ]
        tagged = Query.parse({"items": [{"tags": ["t1"]}]})
        assert await archive.dcb_positions(store, tagged, 0, 6000, 10) == [2500]
        typed = Query.parse({"items": [{"types": ["b"]}]})
        assert await archive.dcb_positions(store, typed, 0, 6000, 2) == [3000, 3001]
    finally:
        await archive.close()
    conn = await asyncpg.connect(archive_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('deltagate_events')") is None
    finally:
        await conn.close()


async def test_reads_of_runs_keep_exactly_the_events_asked_for(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages, streams, times and DCB queries over runs that straddle blocks and pages, against
    the same questions answered event by event; DCB reads one run at a time, so a query needs
    many of them."""
    monkeypatch.setattr("broker.archive.DCB_BATCH", 1)
    store = await archive.store_id("uid-1", "shop", create=True)
    assert store is not None
    kinds, streams = (b"a", b"b", b"c"), (b"x", b"y", b"z")
    everything = []
    counts = dict.fromkeys(streams, 0)
    for p in range(1, 3001):
        stream = streams[p * p % 3]
        created = f"2026-01-02T03:{p // 600:02}:{p // 10 % 60:02}.{p % 10:03}Z"
        fields = [b"s", stream, b"t", kinds[p % 7 % 3], b"p", str(counts[stream]).encode()]
        if p % 5 == 0:
            fields += [b"g", b"t1" if p % 2 else b"t1,t2"]
        fields += [b"e", body(stream.decode(), kinds[p % 7 % 3].decode(), created)]
        counts[stream] += 1
        everything.append([f"{p}-0".encode(), fields])
    for first, last in ((1, 999), (1000, 1999), (2000, 2000), (2001, 3000)):  # inside blocks
        page = encode(store, first, everything[first - 1 : last])
        await archive.copy(store, first, last, page.data)

    def of(p: int) -> tuple[bytes, bytes, list[bytes]]:
        fields = everything[p - 1][1]
        tags = fields[7].split(b",") if len(fields) == 10 else []
        return fields[1], fields[3], tags

    assert [e.global_position for e in await archive.after(store, 1020, 3000, 10)] == list(
        range(1021, 1031)
    )
    assert [e.global_position for e in await archive.before(store, 2050, 1, 100)] == list(
        range(2050, 1950, -1)
    )
    y = [p for p in range(1, 3001) if of(p)[0] == b"y"]
    got = await archive.stream(store, "y", 1500, 1510)
    assert [(e.global_position, codec.event_of(e.json)["streamPosition"]) for e in got] == [
        (y[i], i) for i in range(1500, 1511)
    ]
    moment = datetime(2026, 1, 2, 3, 2, 30, tzinfo=UTC)  # p // 600 == 2, p // 10 % 60 == 30
    assert await archive.first_at(store, moment) == 1500
    for query, after, below, limit in [
        ({"items": [{"types": ["b"]}]}, 0, 3000, 50),
        ({"items": [{"tags": ["t2"]}]}, 1000, 2500, 30),
        (
            {"items": [{"types": ["c"], "tags": ["t1"]}, {"types": ["a"], "tags": ["t2"]}]},
            5,
            3000,
            40,
        ),
        ({"items": [{"types": ["a", "c"]}]}, 2990, 3000, 100),
    ]:
        parsed = Query.parse(query)
        wanted = [
            p
            for p in range(after + 1, below + 1)
            if parsed.accepts(of(p)[1].decode(), [t.decode() for t in of(p)[2]])
        ][:limit]
        assert await archive.dcb_positions(store, parsed, after, below, limit) == wanted, query


async def test_pages_are_read_ahead_one_at_a_time_up_to_the_step(
    redis: aioredis.Redis, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy's reader (``archiver._Pages``): the next page's XRANGE goes out when the page
    before it has come in, before that one is encoded, never two at once; it stops at the
    events the step may copy, at the head and at the step's deadline; close() leaves no task."""
    await StoreAdmin(redis).create("shop")
    await log.append("shop", "s", [NewEvent("x", {"n": i}) for i in range(1000)])
    trace: list[str] = []
    encoding = archiver.encode_between

    async def traced(archive_id: int, first: int, entries: list) -> archiver.Page:
        trace.append(f"encode {first}")
        return await encoding(archive_id, first, entries)

    monkeypatch.setattr(archiver, "encode_between", traced)
    sending = archiver._Pages._send

    def sent(self: archiver._Pages, after: int, count: int) -> asyncio.Task:
        trace.append(f"xrange {after + 1}+{count}")
        return sending(self, after, count)

    monkeypatch.setattr(archiver._Pages, "_send", sent)
    key = StoreKeys("shop").log
    pages = archiver._Pages(redis, key, 1, 100, 1000, size=Sizes(300, MiB, 300), left=700)
    held = []
    while pages.reading:
        page = await pages.next()
        assert page is not None
        held.append((page.held.first, page.held.last))
    assert held == [(101, 400), (401, 700), (701, 800)]
    assert trace == [
        "xrange 101+300",
        "xrange 401+300",
        "encode 101",
        "xrange 701+100",
        "encode 401",
        "encode 701",
    ]
    await pages.close()

    trace.clear()
    pages = archiver._Pages(redis, key, 1, 900, 1000, size=Sizes(300, MiB, 300), left=700)
    page = await pages.next()  # the head: nothing more to read
    assert page is not None and (page.held.first, page.held.last) == (901, 1000)
    assert not pages.reading

    tasks = len(asyncio.all_tasks())
    size = Sizes(300, MiB, 300)
    pages = archiver._Pages(redis, key, 1, 0, 1000, size=size, left=700, deadline=0.0)
    page = await pages.next()  # past its deadline: the first page only
    assert page is not None and not pages.reading
    pages = archiver._Pages(redis, key, 1, 0, 1000, size=Sizes(300, MiB, 300), left=700)
    await pages.close()  # its XRANGE cancelled and awaited
    assert len(asyncio.all_tasks()) == tasks


class WatchedArchive(Archive):
    """Records, as each page's copy starts, the lowest position Redis still holds."""

    def __init__(self, url: str, redis: aioredis.Redis) -> None:
        super().__init__(url)
        self.redis = redis
        self.lows: list[int] = []

    async def copy(self, store: int, first: int, last: int, data: Sequence[bytes]) -> None:
        self.lows.append(int(await self.redis.hget(StoreKeys("shop").meta, "low") or 1))
        await super().copy(store, first, last, data)


async def test_pages_leave_redis_while_the_copy_goes_on(
    redis: aioredis.Redis, log: EventLog, archive_url: str
) -> None:
    """A step trims each archived page while it copies the next ones (``lifecycle._Trims``),
    never past A, and what is left after the copy; the log reads whole throughout."""
    archive = WatchedArchive(archive_url, redis)
    try:
        lifecycle = await archiving(redis, log, archive, 2000, 250)
        tasks = len(asyncio.all_tasks())
        await lifecycle.run_once()  # one step: 8 pages, the 8th cut at the hot bound
        assert len(archive.lows) == 9  # (the newest event, kept hot, on its own)
        assert archive.lows[0] == 1 and archive.lows[-1] > 1  # trimmed before the copy ended
        assert all(low <= 250 * i + 1 for i, low in enumerate(archive.lows))  # never past A
        meta = StoreKeys("shop").meta
        assert int(await redis.hget(meta, "low")) == 2000  # the rest, after the copy
        assert len(asyncio.all_tasks()) == tasks  # the trims' task is done
        assert await positions_read(redis, archive, 2000) == list(range(1, 2001))
    finally:
        await archive.close()


async def test_a_trim_that_fails_fails_the_step_and_leaves_no_task(
    redis: aioredis.Redis, log: EventLog, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = await archiving(redis, log, archive, 1000, 250)

    async def lost(*_: object) -> tuple[int, bool]:
        raise Unavailable("Redis went away")

    monkeypatch.setattr(lifecycle, "_trim_redis", lost)
    tasks = len(asyncio.all_tasks())
    with pytest.raises(Unavailable):
        await lifecycle.step("shop")
    assert len(asyncio.all_tasks()) == tasks
    assert int(await redis.hget(StoreKeys("shop").meta, "low") or 1) == 1
