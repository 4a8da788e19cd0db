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
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis
from _common import (
    BENCH_DIR,
    POD_ENV,
    Context,
    KeepAliveHttp,
    Spread,
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
    table,
    verdict,
)

from broker import EventLog, NewEvent, RedisConfig, connect
from broker.keys import StoreKeys
from tests.harness import ServerProcess, free_port

STORE = "bench"
STREAMS = 1000
CONCURRENCY = 16
BATCHES = (1, 100)
POOL = 64
"""Distinct pre-built event batches (or request bodies) each phase cycles through."""
TARGET = 3.0
"""The goal: raw pipelined XADD/s of an event at most this many times the broker's events/s
(batches of 100). The raw XADD writes what the log stores per event (the same three fields, an
event's JSON of the same size); ``f v`` is shown beside it as the floor of Redis' per-command
cost, which no store of real events reaches."""
XADD_CLIENTS = 50


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


@dataclass
class Row:
    path: str
    batch: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds per measured window, by process: "client", "gateway", "redis"."""
    seconds: float = 0.0
    script_us: float | None = None
    """Redis' own time in the append script (EVALSHA), per call."""
    xadd_us: float | None = None
    """Of which XADD calls inside the script, per call of the script."""
    runs: list[float] = field(default_factory=list)
    """Events/s of every run of this phase (this row is the median one)."""
    server_us: list[float] = field(default_factory=list)
    """The server's CPU per event in every run (HTTP rows)."""

    @property
    def events_per_s(self) -> float:
        return self.requests_per_s * self.batch

    def per_event_us(self, who: str) -> float | None:
        if who not in self.cpu or not self.requests_per_s:
            return None
        return self.cpu[who] / (self.events_per_s * self.seconds) * 1e6


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
        path = f"HTTP, bare Starlette + append.lua (the ceiling), {CONCURRENCY} connections"
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


def opt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else num(value, digits)


def share(row: Row, who: str) -> str:
    return f"{row.cpu[who] / row.seconds:.0%}" if who in row.cpu else ""


CEILING_GOALS = {1: 1.5}
"""Issue 15: a single-event append's gateway CPU at most 1.5x the ceiling's per request."""
GOAL_BATCHED_US = 3.0
"""Issue 15: a 100-event append at most 3 us of gateway CPU per event."""


def against_ceiling(rows: list[Row]) -> list[str]:
    """deltagate's CPU per request as a ratio to the bare Starlette route's, per batch size."""
    lines, cells = [], []
    for size in BATCHES:
        pod = next(r for r in rows if r.batch == size and "gateway pod" in r.path)
        bare = next(r for r in rows if r.batch == size and "ceiling" in r.path)
        mine = Spread.of([x * size for x in pod.server_us])
        floor = Spread.of([x * size for x in bare.server_us])
        ratio = mine.median / floor.median
        cells.append(
            [size, mine.text(1, bold=True), floor.text(1), f"**{ratio:.2f}x**",
             num(mine.median / size, 1)]
        )  # fmt: skip
        if size in CEILING_GOALS:
            lines.append(
                f"- **{verdict(ratio <= CEILING_GOALS[size])}** {size}-event appends: gateway "
                f"CPU per request {ratio:.2f}x the ceiling's (goal: at most "
                f"{CEILING_GOALS[size]:g}x)"
            )
        else:
            lines.append(
                f"- **{verdict(mine.median / size <= GOAL_BATCHED_US)}** {size}-event appends: "
                f"{mine.median / size:.1f} us of gateway CPU per event (goal: at most "
                f"{GOAL_BATCHED_US:g}); {ratio:.2f}x the ceiling per request"
            )
    return [
        "### Against the ceiling of an HTTP append (issue 15)",
        "The ceiling (`bench/_append_ceiling.py`): a bare Starlette route under the same "
        "uvicorn settings that parses the body with orjson and runs the same `EVALSHA` of "
        "`append.lua` (the same keys and arguments) and answers the same JSON; no validation, "
        "auth or metrics. It ran alternately with the pod (auth on, write key), the same load; "
        "its appends are read back through the broker afterwards. CPU per request of the server "
        "process, median (min..max) of the runs:",
        table(
            ["events/request", "deltagate us/req.", "ceiling us/req.", "ratio", "us/event"], cells
        ),
        "\n".join(lines),
    ]


def report(rows: list[Row], ctx: Context) -> str:
    main = table(
        [
            "path",
            "events/request",
            "requests/s",
            "events/s",
            "p50 ms",
            "p99 ms",
            "events/s of each run",
        ],
        [
            [
                r.path,
                r.batch,
                num(r.requests_per_s),
                num(r.events_per_s),
                num(r.p50_ms, 2),
                num(r.p99_ms, 2),
                ", ".join(num(x) for x in r.runs),
            ]
            for r in rows
        ],
    )
    cpu = table(
        [
            "path",
            "events/request",
            "client",
            "gateway",
            "Redis process",
            "Redis in append.lua",
            "of which XADD",
            "cores used: client / gateway / Redis",
        ],
        [
            [
                r.path,
                r.batch,
                opt(r.per_event_us("client")),
                opt(r.per_event_us("gateway")),
                opt(r.per_event_us("redis")),
                opt(None if r.script_us is None else r.script_us / r.batch),
                opt(None if r.xadd_us is None else r.xadd_us / r.batch),
                " / ".join(share(r, who) or "-" for who in ("client", "gateway", "redis")),
            ]
            for r in rows
            if r.cpu
        ],
    )
    versus = against_ceiling(rows)
    broker = next(r for r in rows if r.path.startswith("broker") and r.batch == 100)
    xadd = next(r for r in rows if "`f v`" in r.path and "-P 100" in r.path)
    sized = next(r for r in rows if "event body" in r.path)
    ratio = sized.events_per_s / broker.events_per_s
    floor_ratio = xadd.events_per_s / broker.events_per_s
    return "\n\n".join(
        [
            "## Append",
            f"{CONCURRENCY} concurrent clients, each with one append in flight; per row "
            f"{ctx.runs}, each {ctx.warmup:g} s warm-up then {ctx.duration:g} s measured "
            f"(redis-benchmark: a fixed count of XADDs from {XADD_CLIENTS} connections). "
            'Events like `{"type": "order.placed", "data": {"orderId", "customerId", '
            '"totalAmount", "currency", "items"}}` (~360 bytes of JSON as served) over '
            f"{STREAMS} streams of one store, expected version `any`, no idempotency key, no "
            "subscribers. Latency is per request (for redis-benchmark, per command). The "
            "database is flushed before each run.",
            main,
            "### CPU per event (microseconds)",
            "CPU seconds each process used in the measured window divided by the events "
            "appended. In the broker rows the client is the benchmark process itself "
            "(`EventLog.append` + redis-py); in the HTTP rows it is the load generator (a "
            "minimal keep-alive HTTP/1.1 client on uvloop, in the benchmark process) and the "
            'gateway is the `deltagate serve` subprocess (uvicorn, one process). "Redis '
            'process" includes its network I/O; "in append.lua" is the EVALSHA time of INFO '
            'commandstats and "of which XADD" the XADD calls the script made. A process at '
            "~100% of a core is the bottleneck of its row.",
            cpu,
            "### Goal: batched appends within 3x of raw XADD per event",
            "The yardstick is redis-benchmark pipelined (-P 100) XADD of an event as the log "
            "stores it: the same four fields (`s` stream, `t` type, `p` streamPosition, `e` "
            "the event's JSON after its positions, "
            f"{sized.path.split('with a ')[1].split('-byte')[0]} bytes): "
            f"{num(sized.events_per_s)}/s. The broker path with 100-event batches: "
            f"{num(broker.events_per_s)} events/s (client at {share(broker, 'client')} of a "
            f"core, Redis at {share(broker, 'redis')}).",
            f"**{verdict(ratio <= TARGET)}**: XADD/broker = **{ratio:.2f}** (goal: <= {TARGET:g}).",
            *versus,
            f"Against XADD `f v` ({num(xadd.events_per_s)}/s: two bytes per entry, Redis' "
            f"per-command floor) the ratio is {floor_ratio:.2f}: in this run the append script "
            f"took {opt(broker.script_us and broker.script_us / broker.batch)} us of Redis' time "
            "per event (its XADD commands alone "
            f"{opt(broker.xadd_us and broker.xadd_us / broker.batch)} us, plus the calls from "
            "Lua, the stream index and the pub/sub announcement), while "
            f"`f v` entries go in at {num(xadd.events_per_s)}/s, so Redis spends at most "
            f"{1e6 / xadd.events_per_s:.2f} us on each.",
        ]
    )


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
