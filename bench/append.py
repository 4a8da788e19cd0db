"""Append throughput and latency: through the broker directly, through one gateway pod over
HTTP, and raw ``XADD`` from ``redis-benchmark`` as the yardstick.

Each measured phase is closed-loop: ``CONCURRENCY`` clients each keep one append in flight,
``ctx.warmup`` seconds unmeasured, then ``ctx.duration`` seconds measured. Events are small
order events spread over ``STREAMS`` streams of one store, appended with expected version "any".
The database is flushed before each phase so every phase starts from an empty store.
"""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis
from _append_report import BATCHES, CONCURRENCY, STREAMS, XADD_CLIENTS, Row, report
from _common import (
    BENCH_DIR,
    POD_ENV,
    Context,
    KeepAliveHttp,
    Window,
    api_keys,
    closed_loop,
    deltagate,
    launch,
    median_run,
    num,
    process_cpu,
    progress,
    redis_cpu,
)

from broker import EventLog, NewEvent, RedisConfig, connect
from broker.keys import StoreKeys
from tests.harness import ServerProcess, free_port

STORE = "bench"
POOL = 64
"""Distinct pre-built event batches (or request bodies) each phase cycles through."""


def new_event(rng: random.Random) -> dict[str, Any]:
    return {
        "type": "order.placed",
        "data": {
            "orderId": f"ord-{rng.randrange(10**10):010d}",
            "customerId": f"cust-{rng.randrange(10**6):06d}",
            "totalAmount": round(rng.uniform(5, 500), 2),
            "currency": "EUR",
            "items": rng.randrange(1, 9),
        },
    }


def batches(size: int, seed: int) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    return [[new_event(rng) for _ in range(size)] for _ in range(POOL)]


def stream_of(n: int) -> str:
    return f"order-{n % STREAMS}"


async def measured(
    admin: aioredis.Redis,
    workers: list[Callable[[int], Awaitable[None]]],
    ctx: Context,
    clocks: dict[str, Callable[[], float]],
) -> tuple[Window, dict[str, float], dict[str, Any]]:
    """Run the workers closed-loop; CPU seconds used in the measured window by each clock (and
    by Redis), and Redis' command statistics of that window."""
    before: dict[str, float] = {}

    async def start() -> None:
        await admin.config_resetstat()
        before.update({who: clock() for who, clock in clocks.items()})
        before["redis"] = await redis_cpu(admin)

    window = await closed_loop(workers, warmup=ctx.warmup, duration=ctx.duration, on_start=start)
    used = {who: clock() - before[who] for who, clock in clocks.items()}
    used["redis"] = await redis_cpu(admin) - before["redis"]
    return window, used, await admin.info("commandstats")


async def median(ctx: Context, phase: Callable[[], Awaitable[Row]]) -> Row:
    """Run ``phase`` ``ctx.repeats`` times; the run with the median events/s, knowing all."""
    row, runs = await median_run(ctx.repeats, phase, lambda r: r.events_per_s)
    row.runs = runs
    progress(
        f"{row.path}, {row.batch}/request: {num(row.events_per_s)} events/s "
        f"(runs: {', '.join(num(r) for r in row.runs)}), p99 {row.p99_ms:.2f} ms"
    )
    return row


def measured_row(
    path: str, batch: int, window: Window, cpu: dict[str, float], stats: dict[str, Any]
) -> Row:
    """The row of a closed-loop phase, with the append script's costs from Redis' stats."""
    row = Row(
        path, batch, window.rate, window.p(0.5) * 1e3, window.p(0.99) * 1e3, cpu, window.seconds
    )
    script_costs(row, stats)
    return row


def script_costs(row: Row, stats: dict[str, Any]) -> None:
    evalsha = stats.get("cmdstat_evalsha")
    if not evalsha or not evalsha["calls"]:
        return
    row.script_us = evalsha["usec"] / evalsha["calls"]
    xadd = stats.get("cmdstat_xadd")
    if xadd:
        row.xadd_us = xadd["usec"] / evalsha["calls"]


# -- (a) the broker, in this process --------------------------------------------------------


async def broker_phase(ctx: Context, admin: aioredis.Redis, size: int) -> Row:
    await admin.flushall()
    client = connect(RedisConfig(url=ctx.redis_url))
    log = EventLog(client)
    pool = [[NewEvent(e["type"], e["data"]) for e in b] for b in batches(size, seed=size)]

    def worker(w: int) -> Callable[[int], Awaitable[None]]:
        async def append(i: int) -> None:
            n = w + i * CONCURRENCY
            await log.append(STORE, stream_of(n), pool[n % POOL], auto_create=True)

        return append

    try:
        window, cpu, stats = await measured(
            admin,
            [worker(w) for w in range(CONCURRENCY)],
            ctx,
            {"client": time.process_time},
        )
    finally:
        await client.aclose()
    return measured_row(f"broker `EventLog.append`, {CONCURRENCY} tasks", size, window, cpu, stats)


# -- (b) one gateway pod over HTTP ----------------------------------------------------------


async def http_phase(ctx: Context, admin: aioredis.Redis, gateway: ServerProcess, size: int) -> Row:
    """Appends over HTTP to ``gateway``: a deltagate pod (with a write key) or the ceiling."""
    await admin.flushall()
    keys = await api_keys(ctx)  # the flush took the last phase's
    bodies = [orjson.dumps({"events": b}) for b in batches(size, seed=size)]
    paths = [f"/event-stores/{STORE}/streams/{stream_of(n)}".encode() for n in range(STREAMS)]
    connections = [
        await KeepAliveHttp.open(gateway.port, keys.write_headers) for _ in range(CONCURRENCY)
    ]

    def worker(conn: KeepAliveHttp, w: int) -> Callable[[int], Awaitable[None]]:
        async def append(i: int) -> None:
            n = w + i * CONCURRENCY
            await conn.post(paths[n % STREAMS], bodies[n % POOL])

        return append

    try:
        window, cpu, stats = await measured(
            admin,
            [worker(c, w) for w, c in enumerate(connections)],
            ctx,
            {"client": time.process_time, "gateway": lambda: process_cpu(gateway.pid)},
        )
    finally:
        for c in connections:
            c.close()
    if isinstance(gateway, AppendCeiling):
        await gateway.check(admin, window.requests * size)
        path = f"HTTP, bare Starlette + EventLog.append (the ceiling), {CONCURRENCY} connections"
    else:
        path = f"HTTP, 1 gateway pod, {CONCURRENCY} keep-alive connections"
    return measured_row(path, size, window, cpu, stats)


class AppendCeiling(ServerProcess):
    """``bench/_append_ceiling.py`` on a free port, on the run's Redis."""

    name = "append ceiling"

    def __init__(self, ctx: Context) -> None:
        port = free_port()
        super().__init__(port=port, log_path=ctx.logs / f"append-ceiling-{port}.log")
        self.redis_url = ctx.redis_url
        self.command = [ctx.python, str(BENCH_DIR / "_append_ceiling.py"), str(port), ctx.redis_url]

    def argv(self) -> list[str]:
        return self.command

    async def check(self, admin: aioredis.Redis, at_least: int) -> None:
        """Its appends are real: the store's head counts them and its newest event reads back
        through the broker like any other."""
        head = int(await admin.hget(StoreKeys(STORE).meta, "head") or 0)
        client = connect(RedisConfig(url=self.redis_url))
        try:
            newest = await EventLog(client).read_after(STORE, head - 1, 1)
        finally:
            await client.aclose()
        ok = head >= at_least and newest and newest[0].global_position == head
        if not ok or orjson.loads(newest[0].json)["type"] != "order.placed":
            raise RuntimeError(f"the append ceiling wrote {head} events, unreadable: {newest}")


# -- (c) redis-benchmark XADD ---------------------------------------------------------------


async def redis_benchmark(ctx: Context, admin: aioredis.Redis, pipeline: int, sized: bool) -> Row:
    """``redis-benchmark`` XADD to one stream: ``f v``, or (``sized``) the fields the log
    stores per event, with an event's JSON of realistic size."""
    await admin.flushall()
    count = int((60_000 if pipeline == 1 else 600_000) * ctx.duration)
    if sized:
        # The entry the append script writes: stream, type, streamPosition and the body (the
        # event's JSON after its positions, which readers put back in front).
        sample = {"streamId": "order-123", "eventId": "5b8e6f0e-3c1a-4c53-9d55-3f2a1e7c9b10"}
        sample |= new_event(random.Random())
        sample |= {"schemaVersion": 1, "transactionId": "8f14e45f-ceea-467a-9575-0a1b2c3d4e5f"}
        sample |= {"createdAt": "2025-01-01T12:00:00.000Z"}
        body = orjson.dumps(sample).decode()[1:]
        fields = ["s", "order-123", "t", "order.placed", "p", "12", "e", body]
    else:
        fields = ["f", "v"]
    argv = ["-p", str(ctx.redis_port), "-n", str(count), "-c", str(XADD_CLIENTS)]
    argv += ["-P", str(pipeline), "--csv", "XADD", "benchstream", "*", *fields]
    proc = await asyncio.create_subprocess_exec(
        "redis-benchmark", *argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    # The command name (first column) is not CSV-escaped, so read the figures from the right.
    lines = out.decode().strip().splitlines()
    if len(lines) < 2:
        raise RuntimeError(f"redis-benchmark printed no result: {out.decode()!r}")
    names = [c.strip('"') for c in lines[0].split(",")][1:]
    r = dict(zip(names, (c.strip('"') for c in lines[-1].split(",")[-len(names) :]), strict=True))
    size = f"a log entry with a {len(fields[-1])}-byte event body" if sized else "`f v`"
    return Row(
        f"`redis-benchmark` XADD {size}, -c {XADD_CLIENTS} -P {pipeline}",
        1,
        float(r["rps"]),
        float(r["p50_latency_ms"]),
        float(r["p99_latency_ms"]),
    )


# -- the section ----------------------------------------------------------------------------


async def alternate(ctx: Context, phases: list[Callable[[], Awaitable[Row]]]) -> list[Row]:
    """Each phase ``ctx.repeats`` times, alternating (all phases once, then again): per phase
    the run with the median events/s, knowing every run's events/s and server CPU."""
    runs: list[list[Row]] = [[] for _ in phases]
    for _ in range(ctx.repeats):
        for done, phase in zip(runs, phases, strict=True):
            done.append(await phase())
    rows = []
    for done in runs:
        ordered = sorted(done, key=lambda r: r.events_per_s)
        row = ordered[len(ordered) // 2]
        row.runs = [r.events_per_s for r in ordered]
        row.server_us = [r.per_event_us("gateway") or math.nan for r in done]
        progress(
            f"{row.path}, {row.batch}/request: {num(row.events_per_s)} events/s "
            f"(runs: {', '.join(num(r) for r in row.runs)}), p99 {row.p99_ms:.2f} ms"
        )
        rows.append(row)
    return rows


async def main(ctx: Context) -> str:
    admin = aioredis.Redis(port=ctx.redis_port, decode_responses=True)
    rows: list[Row] = []
    try:
        for size in BATCHES:
            rows.append(await median(ctx, partial(broker_phase, ctx, admin, size)))
        gateway = deltagate(ctx, "serve", POD_ENV)
        ceiling = AppendCeiling(ctx)
        try:
            await launch(gateway)
            await launch(ceiling)
            for size in BATCHES:
                phases = [partial(http_phase, ctx, admin, p, size) for p in (gateway, ceiling)]
                rows += await alternate(ctx, phases)
        finally:
            gateway.stop(timeout=15)
            ceiling.stop(timeout=15)
        for pipeline, sized in ((1, False), (100, False), (100, True)):
            rows.append(await median(ctx, partial(redis_benchmark, ctx, admin, pipeline, sized)))
        await admin.flushall()
    finally:
        await admin.aclose()
    return report(rows, ctx)
