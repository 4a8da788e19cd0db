"""The PostgreSQL archive (issue 18): how fast the lifecycle copies events out of Redis, what an
event costs in Redis and in PostgreSQL, and a replay of archived history beside the same replay
from Redis.

Run by ``bench/run.py`` (alone: ``.venv/bin/python bench/run.py --only archive``). PostgreSQL is
the machine's, on 127.0.0.1:5432 (trust auth, user postgres; ``DG_BENCH_POSTGRES`` overrides):
the run creates a database of its own and drops it at the end.

1. **The batched append rate**: ``EventLog.append`` of 100-event batches from 16 tasks (the
   append benchmark's broker row, measured again here in the same run): the rate the archive must
   keep up with twice over.
2. **Archive throughput**: a store filled with events first (over 100 streams, batches of 100),
   then ``Lifecycle.run_once()`` driven in this process until every event is in PostgreSQL; the
   store keeps its newest 1,000 events hot, so each step also moves what it copied out of Redis
   (``trim.lua``). Events/s copied, and CPU per event of this process (the lifecycle), of
   PostgreSQL's backends serving the bench database, and of Redis. Both this and the batched
   appends are a pod's work when deployed: this process runs them with the garbage collector
   set as a pod sets it (``gateway.process.settle_gc``; the defaults cost the copy about a third
   more CPU per event).
3. **Bytes per event**: Redis' ``used_memory`` growth while the store filled / events (and the
   log stream's own ``MEMORY USAGE``); PostgreSQL's events table with its indexes
   (``pg_total_relation_size``) / events. Then the same for events of ~250, ~1,000 and ~4,000
   bytes of JSON (``sizes``), the figures ``docs/operations.md`` sizes Redis and PostgreSQL with.
4. **Replay**: a pod as deployed (auth on) with ``DELTAGATE_ARCHIVE_URL``; two stores of 100,000
   events, one kept hot (``hotRetention.maxEvents`` above its size) and one archived down to its
   newest event; one WebSocket client subscribes from ``earliest`` to each in turn
   (``bench/_fanout/phases.replay``), alternating.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from _common import (
    POD_ENV,
    Context,
    Spread,
    api_keys,
    collected_as_in_a_pod,
    deltagate,
    num,
    process_cpu,
    progress,
    redis_cpu,
    table,
    verdict,
)
from _fanout import phases
from _fanout.plan import Plan
from _fanout.results import Replay
from _fanout.rig import Rig
from _fanout.servers import DELTAGATE, Server
from _fanout.workers import LoadGen
from append import broker_phase

from broker import (
    Archive,
    EventLog,
    Lifecycle,
    LifecycleOptions,
    NewEvent,
    RedisConfig,
    StoreAdmin,
    connect,
)
from broker.keys import StoreKeys

POSTGRES = os.environ.get("DG_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
STREAMS = 100
HOT = 1000
"""Events the archived store keeps in Redis during the throughput run."""
REPLAY_EVENTS = 100_000
GOAL_KEEP_UP = 2.0
GOAL_REPLAY = 2.0


@dataclass
class Copy:
    events: int
    seconds: float
    cpu: dict[str, float]
    """CPU seconds by process: lifecycle (this process), postgres (backends), redis."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class Measured:
    append_rates: list[float] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)
    redis_bytes: float = 0.0
    log_bytes: float = 0.0
    postgres_bytes: float = 0.0
    replays: dict[str, Replay] = field(default_factory=dict)
    sized: list[Sized] = field(default_factory=list)


async def main(ctx: Context) -> str:
    try:
        server = await asyncpg.connect(f"{POSTGRES}/postgres", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"## Archive (PostgreSQL)\n\nSkipped: no PostgreSQL at {POSTGRES} ({exc!r})."
    database = f"dg_bench_{os.getpid()}"
    url = f"{POSTGRES}/{database}"
    await server.execute(f'CREATE DATABASE "{database}"')
    admin = aioredis.Redis(port=ctx.redis_port, decode_responses=True)
    measured = Measured()
    started = time.monotonic()
    try:
        for _ in range(ctx.repeats):
            # Both are a pod's work in a deployment: measured with a pod's collector settings.
            with collected_as_in_a_pod():
                row = await broker_phase(ctx, admin, 100)
                measured.append_rates.append(row.events_per_s)
                measured.copies.append(await copy_run(ctx, admin, url, measured))
        measured.sized = await sizes(ctx, admin, url)
        await admin.flushall()
        measured.replays = await replays(ctx, admin, url)
    finally:
        await admin.flushall()
        await admin.aclose()
        await server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await server.close()
    return report(measured, ctx, time.monotonic() - started)


# -- archive throughput ---------------------------------------------------------------------


async def fill(log: EventLog, store: str, total: int) -> None:
    """``total`` events in batches of 100 over ``STREAMS`` streams, 16 batches at a time."""
    batches = list(range(0, total, 100))

    async def one(first: int) -> None:
        events = [
            NewEvent("order.placed", {"orderId": f"ord-{n:010d}", "totalAmount": n % 500 + 0.5})
            for n in range(first, min(total, first + 100))
        ]
        await log.append(store, f"order-{(first // 100) % STREAMS}", events)

    for at in range(0, len(batches), 16):
        await asyncio.gather(*(one(b) for b in batches[at : at + 16]))


async def backends(url: str) -> list[int]:
    """Process ids of the PostgreSQL backends connected to the bench database."""
    database = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres", timeout=5)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu(pid)
        except OSError:
            pass  # gone meanwhile
    return total


async def emptied(archive: Archive, url: str) -> None:
    """The archive's tables made (on first use) and emptied."""
    await archive.ping()
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("TRUNCATE deltagate_runs, deltagate_stores")
    finally:
        await conn.close()


async def copy_run(ctx: Context, admin: aioredis.Redis, url: str, measured: Measured) -> Copy:
    """Fill a store, then archive all of it with the lifecycle; measure both."""
    await admin.flushall()
    events = 30_000 if ctx.quick else 200_000
    client = connect(RedisConfig(url=ctx.redis_url))
    archive = Archive(url, seconds=30)
    try:
        await StoreAdmin(client).create("cold", settings={"hotRetention": {"maxEvents": HOT}})
        before = int((await admin.info("memory"))["used_memory"])
        log = EventLog(client)
        await fill(log, "cold", events)
        grown = int((await admin.info("memory"))["used_memory"]) - before
        measured.redis_bytes = grown / events
        usage = await admin.memory_usage(StoreKeys("cold").log, samples=0)
        measured.log_bytes = int(usage or 0) / events
        await emptied(archive, url)  # the schema made, before the clock
        reader = EventLog(client, archive=archive)
        lifecycle = Lifecycle(client, reader, archive, LifecycleOptions())
        uid = await admin.hget(StoreKeys("cold").meta, "uid")
        await archive.store_id(uid, "cold", create=True)  # the store's archive row, unmeasured
        first = lifecycle.stats.archived
        pids = await backends(url)
        clocks = (time.process_time(), cpu_of(pids), await redis_cpu(admin))
        t0 = time.monotonic()
        for _ in range(events):  # bounded: each busy step copies at least a page
            if not await lifecycle.run_once():
                break
        seconds = time.monotonic() - t0
        cpu = {
            "lifecycle": time.process_time() - clocks[0],
            "postgres": cpu_of(pids) - clocks[1],
            "redis": await redis_cpu(admin) - clocks[2],
        }
        if lifecycle.stats.archived < events:
            raise RuntimeError(f"the lifecycle archived {lifecycle.stats.archived} of {events}")
        copied = lifecycle.stats.archived - first
        measured.postgres_bytes = await archive.table_bytes() / lifecycle.stats.archived
        progress(f"archived {copied:,} events in {seconds:.2f} s ({copied / seconds:,.0f}/s)")
        return Copy(copied, seconds, cpu)
    finally:
        await archive.close()
        await client.aclose()


# -- bytes per event, by event size ---------------------------------------------------------

SIZES = (250, 1000, 4000)
"""Approximate bytes of an event's JSON as served, for the bytes-per-event table."""


@dataclass
class Sized:
    json_bytes: float
    redis_bytes: float
    log_bytes: float
    postgres_bytes: float


async def sizes(ctx: Context, admin: aioredis.Redis, url: str) -> list[Sized]:
    """For events of each of ``SIZES``: Redis' ``used_memory`` growth and the log's ``MEMORY
    USAGE`` per event while a store fills, and the archive's table with its indexes per event
    once the lifecycle has copied them. The data is random hex (PostgreSQL compresses values over
    2 kB: padding of one repeated character would make the archive look smaller than it is)."""
    events = 2000 if ctx.quick else 10_000
    out = []
    for size in SIZES:
        await admin.flushall()
        client = connect(RedisConfig(url=ctx.redis_url))
        archive = Archive(url, seconds=30)
        try:
            await StoreAdmin(client).create("sized")
            await emptied(archive, url)
            log = EventLog(client, archive=archive)
            noise = random.Random(size)
            before = int((await admin.info("memory"))["used_memory"])
            for first in range(0, events, 100):
                batch = [
                    NewEvent(
                        "order.placed",
                        {
                            "orderId": f"ord-{n:010d}",
                            "note": noise.randbytes(max(0, size - 230) // 2).hex(),
                        },
                    )
                    for n in range(first, first + 100)
                ]
                await log.append("sized", f"order-{(first // 100) % STREAMS}", batch)
            grown = int((await admin.info("memory"))["used_memory"]) - before
            usage = int(await admin.memory_usage(StoreKeys("sized").log, samples=0) or 0)
            page = await log.after("sized", 0, 100)
            served = sum(len(e.json.encode()) for e in page.events) / len(page.events)
            lifecycle = Lifecycle(client, log, archive, LifecycleOptions())
            for _ in range(events):
                if not await lifecycle.run_once():
                    break
            stored = await archive.table_bytes()
            out.append(Sized(served, grown / events, usage / events, stored / events))
            progress(
                f"{served:,.0f}-byte events: Redis {grown / events:,.0f} B, "
                f"PostgreSQL {stored / events:,.0f} B each"
            )
        finally:
            await archive.close()
            await client.aclose()
    return out


# -- replay from the archive ----------------------------------------------------------------


async def replays(ctx: Context, admin: aioredis.Redis, url: str) -> dict[str, Replay]:
    keys = await api_keys(ctx)
    env = POD_ENV | {"DELTAGATE_ARCHIVE_URL": url, "DELTAGATE_LIFECYCLE_INTERVAL": "0.2"}
    pod = Server(DELTAGATE, [deltagate(ctx, "serve", env)], keys=keys, on_redis=True)
    client = connect(RedisConfig(url=ctx.redis_url))
    lg = LoadGen(1)
    results = {"archive": Replay(), "redis": Replay()}
    stores = {"archive": 1, "redis": REPLAY_EVENTS * 10}
    try:
        for name, hot in stores.items():
            settings = {"hotRetention": {"maxEvents": hot}}
            await StoreAdmin(client).create(name, settings=settings)
        await lg.start(ctx.python)
        await pod.start()
        for name in stores:
            bulk = await lg.appender.call(
                "bulk", 600, port=pod.port, store=name, total=REPLAY_EVENTS, batch=1000,
                headers=keys.write_headers,
            )  # fmt: skip
            results[name].append_s = bulk["seconds"]
        await archived(admin, stores)
        rig = Rig(Plan.of(ctx), lg, admin)
        for run in range(ctx.repeats):
            for name, result in results.items():
                await phases.replay(rig, pod, name, f"{name}-{run}", result)
        pod.alive()
    finally:
        pod.stop()
        await lg.stop()
        await client.aclose()
    return results


async def archived(admin: aioredis.Redis, stores: dict[str, int], seconds: float = 300) -> None:
    """Until the lifecycle has archived every event of ``stores`` and Redis holds at most their
    ``hotRetention.maxEvents``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = True
        for name, hot in stores.items():
            k = StoreKeys(name)
            meta = await admin.hmget(k.meta, "head", "archived")
            length = await admin.xlen(k.log)
            done = done and int(meta[1] or 0) >= int(meta[0] or 1) and length <= hot
        if done:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the pod did not archive {list(stores)} within {seconds:g} s")


# -- the section ----------------------------------------------------------------------------


def report(m: Measured, ctx: Context, elapsed: float) -> str:
    rates = Spread.of([c.rate for c in m.copies])
    appends = Spread.of(m.append_rates)
    keep_up = Spread.of([c.rate / a for c, a in zip(m.copies, m.append_rates, strict=True)])

    def per_event(who: str) -> str:
        return Spread.of([c.cpu[who] / c.events * 1e6 for c in m.copies]).text(2)

    copy_table = table(
        ["events archived", "events/s copied", "batched appends, events/s", "copied / appended",
         "lifecycle us/event", "PostgreSQL us/event", "Redis us/event"],
        [[num(m.copies[0].events), rates.text(0, bold=True), appends.text(0),
          keep_up.text(2, bold=True), per_event("lifecycle"), per_event("postgres"),
          per_event("redis")]],
    )  # fmt: skip
    cold, hot = m.replays["archive"], m.replays["redis"]
    slower = cold.median / hot.median
    replay_table = table(
        ["replayed from", "events", "seconds to caughtUp", "events/s (median)", "pod CPU s"],
        [
            [where, num(min(r.events)), Spread.of(r.seconds).text(2, bold=True),
             num(REPLAY_EVENTS / r.median), Spread.of(r.server_cpu).text(2)]
            for where, r in (("PostgreSQL (archived, 1 event hot)", cold), ("Redis (hot)", hot))
        ],
    )  # fmt: skip
    runs = "one run" if ctx.repeats == 1 else f"{ctx.repeats} runs, median (min..max)"
    return "\n\n".join(
        [
            "## Archive (PostgreSQL)",
            "PostgreSQL on 127.0.0.1:5432 (the machine's; a database made for the run and "
            f"dropped after), Redis the run's. {runs.capitalize()}. This section took "
            f"{elapsed / 60:.1f} min.",
            "### Archive throughput",
            "The lifecycle (`Lifecycle.run_once()` in the benchmark process, default options: "
            f"pages of up to {LifecycleOptions().copy_batch:,} events) copying a filled store to "
            "PostgreSQL and moving what it "
            f"copied out of Redis (keeping {HOT:,} hot), against `EventLog.append` of 100-event "
            "batches from 16 tasks measured just before (the append benchmark's broker row). CPU "
            "per archived event: this process, PostgreSQL's backends serving the bench database, "
            "Redis.",
            copy_table,
            f"**{verdict(keep_up.median >= GOAL_KEEP_UP)}**: the archive copies "
            f"**{keep_up.median:.2f}x** the batched append rate (goal: at least "
            f"{GOAL_KEEP_UP:g}x).",
            "### Bytes per event",
            table(
                ["where", "bytes per event"],
                [
                    ["Redis, `used_memory` growth (every key)", f"**{num(m.redis_bytes)}**"],
                    ["Redis, the log stream alone (`MEMORY USAGE`)", num(m.log_bytes)],
                    ["PostgreSQL, runs table and indexes", f"**{num(m.postgres_bytes)}**"],
                ],
            ),
            'Events like `{"type": "order.placed", "data": {"orderId", "totalAmount"}}` '
            f"over {STREAMS} streams (~230 bytes of JSON as served).",
            "By event size (the same, with a `note` of random hex in `data`; "
            f"{'2,000' if ctx.quick else '10,000'} events each, appended in batches of 100; the "
            "archive's figure is its table with every index once the lifecycle copied them):",
            table(
                [
                    "event JSON as served, bytes",
                    "Redis `used_memory` per event",
                    "Redis log stream per event",
                    "PostgreSQL per event",
                ],
                [
                    [
                        num(z.json_bytes),
                        f"**{num(z.redis_bytes)}**",
                        num(z.log_bytes),
                        f"**{num(z.postgres_bytes)}**",
                    ]
                    for z in m.sized
                ],
            ),
            f"### Replay of {REPLAY_EVENTS:,} archived events to one WebSocket client",
            "One pod as deployed (auth on, `DELTAGATE_ARCHIVE_URL`); appended over HTTP in "
            "batches of 1,000, then archived (the archived store keeps only its newest event in "
            "Redis); one client subscribes from `earliest`: seconds from `subscribe` to "
            "`caughtUp`, alternating the stores.",
            replay_table,
            f"**{verdict(slower < GOAL_REPLAY)}**: from the archive **{slower:.2f}x** the time "
            f"from Redis (goal: under {GOAL_REPLAY:g}x).",
        ]
    )
