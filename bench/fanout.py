"""WebSocket fan-out: one gateway pod on real Redis against the ceiling of its stack.

Run by ``bench/run.py`` (``make bench``; alone: ``.venv/bin/python bench/run.py --only fanout``).

Two servers are measured one after the other in the same run, by the same load generator:

- **ceiling**: ``bench/_ceiling.py``, a plain Starlette WebSocket route and an HTTP POST route that
  broadcasts what is posted, under uvicorn with uvloop and ``ws="websockets-sansio"``, no Redis;
- **deltagate**: one ``deltagate serve`` pod on the run's private ``redis-server``.

The load generator (``bench/_loadgen.py``, picows on uvloop) runs in processes of its own: two for
the WebSocket subscribers, one for the appender, so the server under test keeps a core to itself
as far as a shared 2-core host allows. Every event carries ``data.sentAt`` (``time.time()`` when
the append request is written); latency is the subscriber's receive time minus that, on the same
host clock, so it spans the append call, Redis, the fan-out and the socket writes.

Phases, per server: RSS of idle subscribed connections (1,000, then 5,000); 1,000 subscribers at
10, 50, 100 and 300 events/s (batches of one over 100 streams), then a search for the highest
rate whose p99 stays under 100 ms; a replay of 100,000 events to one client; 1,000 clients
reconnecting at once, each resuming 1,000 events.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
from _common import (
    BENCH_DIR,
    POD_ENV,
    Context,
    deltagate,
    launch,
    num,
    process_cpu,
    raise_nofile,
    redis_cpu,
    table,
    verdict,
)
from _histogram import hist_percentile

from tests.harness import ServerProcess, free_port

SUBSCRIBERS = 1000
FIXED_RATES = (10, 50, 100, 300)
P99_LIMIT = 0.100
IDLE_COUNTS = (1000, 5000)
REPLAY_EVENTS = 100_000
REPLAY_BATCH = 1000
STORM_CLIENTS = 1000
STORM_EVENTS = 1000
SUB_WORKERS = 2
APPEND_CONNECTIONS = 16
READY_SECONDS = 30.0
CALL_TIMEOUT = 120.0

GOALS = {
    "rate_ratio": 0.70,
    "p99_at_50": 0.050,
    "rss_ratio": 1.10,
    "replay_s": 2.0,
    "storm_s": 10.0,
}


@dataclass(frozen=True)
class Plan:
    warmup: float
    duration: float
    drain: float
    """Seconds to wait after the appender stops for the window's events still in flight."""
    ladder: tuple[int, ...]
    """Rates tried in ascending order, per server until its first failure (the fixed rates
    always)."""
    bisections: int
    replay_runs: int
    confirm: bool
    """Re-run a failing step of the climb once before taking it as the server's limit: on a
    shared host one scheduler hiccup can spoil a p99."""
    settle: float
    """Factor on the pauses that let a server settle between phases."""

    @classmethod
    def of(cls, ctx: Context) -> Plan:
        if ctx.quick:
            ladder = (10, 30, 50, 100, 300)
            return cls(0.5, 2.0, 1.0, ladder, 0, replay_runs=1, confirm=False, settle=0.5)
        ladder = (10, 15, 20, 25, 30, 40, 50, 60, 70, 85, 100, 120, 150, 200, 300, 500, 700, 1000)
        return cls(1.0, 5.0, 2.0, ladder, 1, replay_runs=3, confirm=True, settle=1.0)


def log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def rss_of(pid: int) -> int:
    """Resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def host_cpu() -> tuple[int, int, int]:
    """Clock ticks of all cores so far: total, busy (not idle or iowait), stolen by the
    hypervisor."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])
    return total, total - fields[3] - fields[4], fields[7]


async def sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


# -- the servers ----------------------------------------------------------------------------


CEILING = "ceiling"


class Server:
    """A server under test: its process (started by the caller) and what the phases read of it.
    The file-descriptor limit its sockets need is inherited: ``main`` raises its own first."""

    def __init__(self, name: str, process: ServerProcess, *, on_redis: bool) -> None:
        self.name = name
        self.process = process
        self.on_redis = on_redis
        """Whether Redis' CPU counts as this server's."""

    @property
    def port(self) -> int:
        return self.process.port

    def alive(self) -> None:
        self.process.check_running()

    def url(self, store: str) -> str:
        return f"ws://127.0.0.1:{self.port}/event-stores/{store}/events/ws"

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def rss(self) -> int:
        return rss_of(self.process.pid)


class CeilingProcess(ServerProcess):
    """``bench/_ceiling.py`` on a free port."""

    name = "ceiling (Starlette + uvicorn websockets-sansio, no Redis)"

    def __init__(self, ctx: Context) -> None:
        port = free_port()
        super().__init__(port=port, log_path=ctx.logs / f"ceiling-{port}.log")
        self.python = ctx.python

    def argv(self) -> list[str]:
        return [self.python, str(BENCH_DIR / "_ceiling.py"), str(self.port)]


def ceiling(ctx: Context) -> Server:
    return Server(CEILING, CeilingProcess(ctx), on_redis=False)


def pod(ctx: Context) -> Server:
    return Server("deltagate", deltagate(ctx, "serve", POD_ENV), on_redis=True)


# -- the load generator ---------------------------------------------------------------------


class Worker:
    """One ``bench/_loadgen.py`` process, one JSON command per line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.errors = tempfile.TemporaryFile()
        self.lock = asyncio.Lock()

    async def start(self, python: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            python,
            str(BENCH_DIR / "_loadgen.py"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            limit=1 << 26,
        )
        await self.call("ping", 30)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return process_cpu(self.pid)

    async def call(self, cmd: str, limit: float = CALL_TIMEOUT, **args: Any) -> dict[str, Any]:
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        async with self.lock:
            proc.stdin.write(orjson.dumps({"cmd": cmd, **args}) + b"\n")
            await proc.stdin.drain()
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), limit)
            except TimeoutError:
                raise RuntimeError(f"load generator {self.name}: {cmd} timed out") from None
        if not line:
            self.errors.seek(0)
            tail = self.errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"load generator {self.name} exited: {tail}")
        result: dict[str, Any] = orjson.loads(line)
        if "error" in result:
            raise RuntimeError(f"load generator {self.name}: {cmd}: {result['error']}")
        return result

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.write(b'{"cmd":"exit"}\n')
            await proc.stdin.drain()
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        self.errors.close()


class LoadGen:
    def __init__(self) -> None:
        self.subs = [Worker(f"subscribers-{i + 1}") for i in range(SUB_WORKERS)]
        self.appender = Worker("appender")

    @property
    def workers(self) -> list[Worker]:
        return [*self.subs, self.appender]

    async def start(self, python: str) -> None:
        await asyncio.gather(*(w.start(python) for w in self.workers))

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers))

    def cpu(self) -> list[float]:
        return [w.cpu() for w in self.workers]

    @staticmethod
    def split(total: int, parts: int) -> list[int]:
        return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]

    async def each(self, cmd: str, limit: float = CALL_TIMEOUT, **args: Any) -> list[dict]:
        return list(await asyncio.gather(*(w.call(cmd, limit, **args) for w in self.subs)))

    async def connect(
        self,
        group: str,
        url: str,
        total: int,
        *,
        position: Any = "latest",
        concurrency: int = 100,
        timeout: float = 90.0,
        wait_caught: bool = False,
    ) -> dict[str, Any]:
        counts = self.split(total, len(self.subs))
        results = await asyncio.gather(
            *(
                w.call(
                    "connect",
                    timeout + 30,
                    group=group,
                    url=url,
                    count=n,
                    position=position,
                    concurrency=concurrency,
                    timeout=timeout,
                    wait_caught=wait_caught,
                )
                for w, n in zip(self.subs, counts, strict=True)
                if n
            )
        )
        merged: dict[str, Any] = {
            "connected": sum(r["connected"] for r in results),
            "failed": sum(r["failed"] for r in results),
            "errors": [e for r in results for e in r["errors"]],
            "refused": sum(r["refused"] for r in results),
            "seconds": max(r["seconds"] for r in results),
            "positions": sorted({p for r in results for p in r["positions"]}),
            "per_worker": [r["connected"] for r in results],
        }
        if wait_caught:
            merged |= {
                "caught": sum(r["caught"] for r in results),
                "first_sub_sent": min(r["first_sub_sent"] for r in results),
                "last_caught": max(r["last_caught"] for r in results),
                "events_min": min(r["events_min"] for r in results),
                "events_max": max(r["events_max"] for r in results),
                "server_errors": [e for r in results for e in r["server_errors"]],
            }
        if merged["failed"]:
            log(f"{merged['failed']} of {total} connections failed: {merged['errors'][:2]}")
        return merged

    async def close(self, group: str) -> None:
        await self.each("close", 30, group=group)


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Step:
    rate: int
    subscribers: int
    appended: float
    """Events appended per second in the measured window (successful appends)."""
    deliveries: float
    """Event frames received per second in the measured window (receive time)."""
    p50: float
    p99: float
    missing: float
    """Fraction of the window's events (times subscribers) not received by the end of drain."""
    server_cpu: float
    """Cores used by the server in the window."""
    rss: int
    loadgen_cpu: list[float]
    """Cores used by each load generator process in the window (subscribers..., appender)."""
    redis_cpu: float | None
    append_p99: float
    append_errors: int
    host_busy: float
    """Share of all the host's cores busy in the window (anyone's work), and stolen."""
    host_steal: float
    errors: list[str] = field(default_factory=list)

    @property
    def expected(self) -> float:
        return self.appended * self.subscribers

    @property
    def behind(self) -> bool:
        return (
            self.missing > 0.01
            or self.deliveries < 0.9 * self.expected
            or self.appended < 0.9 * self.rate
            or self.append_errors > 0
        )

    @property
    def ok(self) -> bool:
        return self.p99 < P99_LIMIT and not self.behind

    @property
    def us_per_delivery(self) -> float:
        return self.server_cpu / self.deliveries * 1e6 if self.deliveries else math.nan


@dataclass
class Idle:
    base_rss: int
    rss: dict[int, int]
    connect_s: dict[int, float]
    refused: int
    failed: int

    def per_conn(self, n: int) -> float:
        return (self.rss[n] - self.base_rss) / n


@dataclass
class Replay:
    append_s: float = 0.0
    seconds: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return sorted(self.seconds)[len(self.seconds) // 2] if self.seconds else math.inf


@dataclass
class Storm:
    clients: int
    caught: int
    seconds: float
    events_min: int
    events_max: int
    connect_s: float
    refused: int
    server_cpu: float
    errors: list[str]

    @property
    def complete(self) -> bool:
        return (
            self.caught == self.clients
            and self.events_min == STORM_EVENTS
            and self.events_max == STORM_EVENTS
        )


@dataclass
class Result:
    server: Server
    idle: Idle | None = None
    steps: dict[int, Step] = field(default_factory=dict)
    retried: dict[int, Step] = field(default_factory=dict)
    """Failed first runs of climbing steps that were run again."""
    first_fail: int | None = None
    highest: int = 0
    replay: Replay = field(default_factory=Replay)
    storm: Storm | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.server.name


class Bench:
    """The phases. Both servers run side by side (the idle one costs nothing) and the phases
    alternate between them, so a burst of other work on the shared host hits both alike."""

    def __init__(self, ctx: Context, lg: LoadGen, admin: aioredis.Redis) -> None:
        self.ctx = ctx
        self.plan = Plan.of(ctx)
        self.lg = lg
        self.admin = admin

    async def measure(self, servers: list[Server]) -> list[Result]:
        results = [Result(s) for s in servers]
        for r in results:
            r.idle = await self.idle(r.server)
        await self.rates(results)
        await self.replays(results)
        for r in results:
            r.storm = await self.storm(r.server)
        for r in results:
            r.server.alive()
            if r.server.name == CEILING:
                async with httpx.AsyncClient() as http:
                    dropped = (await http.get(f"http://127.0.0.1:{r.server.port}/stats")).json()
                if dropped["dropped"]:
                    r.notes.append(
                        f"The ceiling dropped {dropped['dropped']:,} frames in all (its queues "
                        "were full: the steps where it fell behind)."
                    )
        return results

    # -- idle connections ---------------------------------------------------------------------

    async def idle(self, server: Server) -> Idle:
        lg = self.lg
        # Warm the server's code paths (imports, first store, first subscription) first.
        await lg.connect("warm", server.url("idle"), 20)
        await lg.appender.call("bulk", port=server.port, store="idle", total=20, batch=1, conns=1)
        await lg.close("warm")
        await asyncio.sleep(1.0 * self.plan.settle)
        base = server.rss()
        rss: dict[int, int] = {}
        seconds: dict[int, float] = {}
        refused = failed = opened = 0
        for count in IDLE_COUNTS:
            started = time.monotonic()
            got = await lg.connect("idle", server.url("idle"), count - opened, concurrency=50)
            seconds[count] = time.monotonic() - started
            refused += got["refused"]
            failed += got["failed"]
            opened = count
            await asyncio.sleep(1.5 * self.plan.settle)
            rss[count] = server.rss()
            log(
                f"{server.name}: {count} idle connections, RSS "
                f"{(rss[count] - base) / count / 1024:.1f} KiB each "
                f"(opened in {seconds[count]:.1f} s, {got['refused']} refused and retried)"
            )
        await lg.close("idle")
        await asyncio.sleep(1.0 * self.plan.settle)
        return Idle(base, rss, seconds, refused, failed)

    # -- rates ----------------------------------------------------------------------------------

    async def subscribe(self, server: Server) -> None:
        got = await self.lg.connect(f"rate-{server.name}", server.url("fanout"), SUBSCRIBERS)
        if got["connected"] != SUBSCRIBERS:
            raise RuntimeError(f"{server.name}: only {got['connected']} subscribers connected")

    async def resubscribe(self, server: Server) -> None:
        """After a step that fell behind: drop the backlog with the connections, start fresh."""
        await self.lg.close(f"rate-{server.name}")
        await asyncio.sleep(1.0 * self.plan.settle)
        server.alive()
        await self.subscribe(server)
        await asyncio.sleep(0.5)

    async def step(self, server: Server, rate: int) -> Step:
        plan, lg = self.plan, self.lg
        group = f"rate-{server.name}"
        start = time.time() + 0.3
        s0 = start + plan.warmup
        s1 = s0 + plan.duration
        for w in lg.subs:
            await w.call("window", group=group, s0=s0, s1=s1, t0=s0, t1=s1)
        appending = asyncio.create_task(
            lg.appender.call(
                "append",
                plan.warmup + plan.duration + 60,
                port=server.port,
                store="fanout",
                rate=rate,
                start=start,
                warmup=plan.warmup,
                duration=plan.duration,
                conns=APPEND_CONNECTIONS,
            )
        )
        await sleep_until(s0)
        cpu0, lg0, host0 = server.cpu(), lg.cpu(), host_cpu()
        redis0 = await redis_cpu(self.admin) if server.on_redis else 0.0
        await sleep_until(s1)
        cpu1, lg1, host1 = server.cpu(), lg.cpu(), host_cpu()
        redis1 = await redis_cpu(self.admin) if server.on_redis else 0.0
        ticks = max(1, host1[0] - host0[0])
        rss = server.rss()
        appended = await appending
        per_worker = LoadGen.split(SUBSCRIBERS, len(lg.subs))
        await asyncio.gather(
            *(
                w.call(
                    "wait",
                    plan.drain + 30,
                    group=group,
                    measured=appended["in_window"] * n,
                    timeout=plan.drain,
                )
                for w, n in zip(lg.subs, per_worker, strict=True)
            )
        )
        stats = await lg.each("stats", group=group)
        hist: dict[int, int] = {}
        for s in stats:
            for index, n in s["hist"]:
                hist[index] = hist.get(index, 0) + n
        measured = sum(s["measured"] for s in stats)
        expected = max(measured, appended["in_window"] * SUBSCRIBERS)
        d = plan.duration
        step = Step(
            rate=rate,
            subscribers=SUBSCRIBERS,
            appended=appended["in_window"] / d,
            deliveries=sum(s["in_window"] for s in stats) / d,
            p50=hist_percentile(hist, expected, 0.50),
            p99=hist_percentile(hist, expected, 0.99),
            missing=(expected - measured) / expected if expected else 0.0,
            server_cpu=(cpu1 - cpu0) / d,
            rss=rss,
            loadgen_cpu=[(b - a) / d for a, b in zip(lg0, lg1, strict=True)],
            redis_cpu=(redis1 - redis0) / d if server.on_redis else None,
            append_p99=appended["append_p99"],
            append_errors=appended["errors"],
            host_busy=(host1[1] - host0[1]) / ticks,
            host_steal=(host1[2] - host0[2]) / ticks,
            errors=[e for s in stats for e in s["errors"]]
            + ([appended["first_error"]] if appended["first_error"] else []),
        )
        log(
            f"{server.name} {rate} ev/s: appended {step.appended:.0f}/s, "
            f"{num(step.deliveries)} deliveries/s, p50 {ms(step.p50)} p99 {ms(step.p99)} ms, "
            f"missing {step.missing:.1%}, server {step.server_cpu:.0%} CPU, "
            f"loadgen {' / '.join(f'{c:.0%}' for c in step.loadgen_cpu)}, "
            f"host busy {step.host_busy:.0%}" + (" -> ok" if step.ok else " -> over the limit")
        )
        return step

    async def run_step(self, result: Result, rate: int, climbing: bool = False) -> Step:
        step = await self.step(result.server, rate)
        if not step.ok:
            await self.resubscribe(result.server)
            if climbing and self.plan.confirm:
                result.retried[rate] = step
                step = await self.step(result.server, rate)
                if not step.ok:
                    await self.resubscribe(result.server)
        result.steps[rate] = step
        if not step.ok and climbing:
            if result.first_fail is None or rate < result.first_fail:
                result.first_fail = rate
        return step

    async def rates(self, results: list[Result]) -> None:
        for r in results:
            await self.subscribe(r.server)
        await asyncio.sleep(0.5)
        try:
            # Up the ladder, alternating servers at each rate: a server stops climbing at its
            # first failure, but every server runs every fixed rate.
            for rate in self.plan.ladder:
                for r in results:
                    if r.first_fail is None:
                        await self.run_step(r, rate, climbing=True)
                    elif rate in FIXED_RATES:
                        await self.run_step(r, rate)
                if all(r.first_fail is not None for r in results) and rate >= max(FIXED_RATES):
                    break
            for r in results:
                r.highest = max(
                    (x for x, s in r.steps.items() if s.ok and x < (r.first_fail or math.inf)),
                    default=0,
                )
            # Then narrow the gap between the highest passing and the first failing rate.
            for _ in range(self.plan.bisections):
                for r in results:
                    if r.first_fail is None or not r.highest:
                        continue
                    mid = nice(math.sqrt(r.highest * r.first_fail))
                    if mid <= r.highest or mid >= r.first_fail or mid in r.steps:
                        continue
                    if (await self.run_step(r, mid, climbing=True)).ok:
                        r.highest = mid
        finally:
            for r in results:
                await self.lg.close(f"rate-{r.name}")
            await asyncio.sleep(1.0 * self.plan.settle)

    # -- replay ---------------------------------------------------------------------------------

    async def replays(self, results: list[Result]) -> None:
        lg = self.lg
        for r in results:
            bulk = await lg.appender.call(
                "bulk",
                600,
                port=r.server.port,
                store="replay",
                total=REPLAY_EVENTS,
                batch=REPLAY_BATCH,
            )
            r.replay.append_s = bulk["seconds"]
            log(f"{r.name}: appended {REPLAY_EVENTS:,} events in {bulk['seconds']:.1f} s")
        for run in range(self.plan.replay_runs):
            for r in results:
                server, replay = r.server, r.replay
                group = f"replay-{run}"
                cpu0 = server.cpu()
                got = await lg.subs[0].call(
                    "connect",
                    150,
                    group=group,
                    url=server.url("replay"),
                    count=1,
                    position="earliest",
                    timeout=120,
                    wait_caught=True,
                )
                replay.server_cpu.append(server.cpu() - cpu0)
                await lg.subs[0].call("close", group=group)
                if not got["caught"]:
                    raise RuntimeError(f"{server.name}: replay did not catch up: {got}")
                replay.seconds.append(got["last_caught"] - got["first_sub_sent"])
                replay.events.append(got["events_min"])
                log(
                    f"{server.name}: replay {replay.events[-1]:,} events in "
                    f"{replay.seconds[-1]:.2f} s"
                )

    # -- reconnect storm ------------------------------------------------------------------------

    async def storm(self, server: Server) -> Storm:
        lg = self.lg
        port = server.port
        await lg.appender.call("bulk", port=port, store="storm", total=STORM_EVENTS, batch=1000)
        first = await lg.connect("storm", server.url("storm"), STORM_CLIENTS, concurrency=50)
        positions = first["positions"]
        if len(positions) != 1:
            raise RuntimeError(f"{server.name}: storm clients saw heads {positions}")
        await lg.close("storm")
        # Everyone is gone; the store moves on by STORM_EVENTS while they are away.
        await lg.appender.call("bulk", port=port, store="storm", total=STORM_EVENTS, batch=1000)
        await asyncio.sleep(1.5 * self.plan.settle)
        cpu0 = server.cpu()
        started = time.time()
        got = await lg.connect(
            "storm-back",
            server.url("storm"),
            STORM_CLIENTS,
            position=positions[0],
            concurrency=STORM_CLIENTS,
            timeout=60,
            wait_caught=True,
        )
        cpu = server.cpu() - cpu0
        await lg.close("storm-back")
        storm = Storm(
            clients=STORM_CLIENTS,
            caught=got["caught"],
            seconds=(got["last_caught"] - started) if got["caught"] else math.inf,
            events_min=got["events_min"],
            events_max=got["events_max"],
            connect_s=got["seconds"],
            refused=got["refused"],
            server_cpu=cpu,
            errors=got["errors"],
        )
        log(
            f"{server.name}: storm: {storm.caught}/{storm.clients} caught up in "
            f"{storm.seconds:.2f} s (events each {storm.events_min}..{storm.events_max}, "
            f"{storm.refused} refused and retried)"
        )
        await asyncio.sleep(1.0 * self.plan.settle)
        return storm


def nice(value: float) -> int:
    """Two significant digits."""
    digits = max(0, math.floor(math.log10(value)) - 1)
    return int(round(value / 10**digits) * 10**digits)


# -- the report -----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "lost"
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1e3:,.1f}"


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


STEP_HEADERS = [
    "events/s (target)",
    "server",
    "appended/s",
    "deliveries/s",
    "offered deliveries/s",
    "p50 ms",
    "p99 ms",
    "server CPU",
    "server us/delivery",
    "server RSS MiB",
    "Redis CPU",
    "loadgen CPU: subscribers / appender",
    "host CPU busy (all cores, anyone)",
    "p99 < 100 ms and keeping up",
]


def step_row(result: Result, rate: int) -> list[object]:
    s = result.steps[rate]
    lg = s.loadgen_cpu
    late = "" if s.missing <= 0 else f" ({s.missing:.1%} lost)"
    return [
        rate,
        result.name,
        num(s.appended),
        num(s.deliveries),
        num(s.expected),
        ms(s.p50),
        ms(s.p99) + late,
        f"{s.server_cpu:.0%}",
        num(s.us_per_delivery, 1),
        mib(s.rss),
        "-" if s.redis_cpu is None else f"{s.redis_cpu:.0%}",
        " + ".join(f"{c:.0%}" for c in lg[:-1]) + f" / {lg[-1]:.0%}",
        f"{s.host_busy:.0%}" + (f" ({s.host_steal:.0%} stolen)" if s.host_steal >= 0.01 else ""),
        "yes" if s.ok else ("no, behind" if s.behind else "no"),
    ]


def report(results: list[Result], plan: Plan, elapsed: float) -> str:
    ceiling, pod = results
    fixed = table(STEP_HEADERS, [step_row(r, rate) for rate in FIXED_RATES for r in results])
    search = table(
        ["server", "rate: p99 ms (x = over 100 ms or falling behind)", "highest rate, ev/s"],
        [
            [
                r.name,
                ", ".join(
                    f"{rate}: "
                    + (f"{ms(r.retried[rate].p99)} x then " if rate in r.retried else "")
                    + ms(r.steps[rate].p99)
                    + ("" if r.steps[rate].ok else " x")
                    for rate in sorted(r.steps)
                ),
                r.highest or "< 10",
            ]
            for r in results
        ],
    )
    others = sorted({x for r in results for x in r.steps} - set(FIXED_RATES))
    extra = [step_row(r, rate) for rate in others for r in results if rate in r.steps]
    worst_lg = max(c for r in results for s in r.steps.values() for c in s.loadgen_cpu)

    idle_rows = []
    for r in results:
        idle = r.idle
        assert idle is not None
        idle_rows.append(
            [r.name, mib(idle.base_rss)]
            + [
                f"{mib(idle.rss[n])} MiB, **{idle.per_conn(n) / 1024:.1f} KiB/conn** "
                f"(opened in {idle.connect_s[n]:.1f} s)"
                for n in IDLE_COUNTS
            ]
            + [f"{idle.refused:,}"]
        )
    idle_table = table(
        ["server", "RSS before, MiB"]
        + [f"{n:,} connections" for n in IDLE_COUNTS]
        + ["connects refused (retried)"],
        idle_rows,
    )
    replay_table = table(
        [
            "server",
            "events received",
            "seconds to caughtUp (median)",
            "events/s",
            "each run, s",
            "server CPU s (median)",
            "appending them first took, s",
        ],
        [
            [
                r.name,
                num(min(r.replay.events)),
                f"{r.replay.median:.2f}",
                num(REPLAY_EVENTS / r.replay.median),
                ", ".join(f"{x:.2f}" for x in r.replay.seconds),
                f"{sorted(r.replay.server_cpu)[len(r.replay.server_cpu) // 2]:.2f}",
                f"{r.replay.append_s:.1f}",
            ]
            for r in results
        ],
    )
    storm_rows = []
    for r in results:
        st = r.storm
        assert st is not None
        storm_rows.append(
            [
                r.name,
                f"{st.caught:,} / {st.clients:,}",
                f"{st.events_min:,}..{st.events_max:,}",
                f"**{st.seconds:.2f}**",
                f"{st.connect_s:.2f}",
                num(st.clients * STORM_EVENTS / st.seconds),
                f"{st.server_cpu:.2f}",
                f"{st.refused:,}" + (f" ({st.errors[0]})" if st.errors else ""),
            ]
        )
    storm_table = table(
        [
            "server",
            "clients caught up",
            "events each before caughtUp",
            "seconds until all caught up",
            "seconds until all subscribed",
            "deliveries/s",
            "server CPU s",
            "connects refused (retried), first reason",
        ],
        storm_rows,
    )

    lines = []
    if ceiling.highest:
        ratio = pod.highest / ceiling.highest
        lines.append(
            f"- **{verdict(ratio >= GOALS['rate_ratio'])}** highest rate with p99 < 100 ms: "
            f"deltagate {pod.highest or '< 10'} ev/s vs ceiling {ceiling.highest} ev/s = "
            f"**{ratio:.0%}** of the ceiling (goal >= {GOALS['rate_ratio']:.0%})"
        )
    else:
        lines.append(
            "- **FAIL** highest rate with p99 < 100 ms: not measurable in this run, the ceiling "
            f"itself missed it at the lowest rate ({min(plan.ladder)} ev/s; deltagate: "
            f"{pod.highest or '< 10'})"
        )
    top = max(FIXED_RATES)
    flat_pod, flat_ceiling = pod.steps[top], ceiling.steps[top]
    saturation = (
        f"For reference, flat out ({top} ev/s offered, both servers behind): the server CPU per "
        f"delivery, the steadiest figure on a shared host, was "
        f"{num(flat_pod.us_per_delivery, 1)} us for deltagate vs "
        f"{num(flat_ceiling.us_per_delivery, 1)} us for the ceiling "
        f"(**{flat_pod.us_per_delivery / flat_ceiling.us_per_delivery:.2f}x**); deliveries/s "
        f"{num(flat_pod.deliveries)} vs {num(flat_ceiling.deliveries)} "
        f"({flat_pod.deliveries / flat_ceiling.deliveries:.0%}), which also depends on how much "
        "of a core each got while other work ran."
    )
    at50, c50 = pod.steps[50], ceiling.steps[50]
    lines.append(
        f"- **{verdict(at50.ok and at50.p99 < GOALS['p99_at_50'])}** p99 at 1,000 subscribers x "
        f"50 events/s: deltagate **{ms(at50.p99)} ms** (goal < 50 ms; ceiling {ms(c50.p99)} ms "
        f"in the same run: deltagate/ceiling = {at50.p99 / c50.p99:.2f})"
    )
    assert pod.idle is not None and ceiling.idle is not None
    big, small = IDLE_COUNTS[-1], IDLE_COUNTS[0]
    rss_ratio = pod.idle.per_conn(big) / ceiling.idle.per_conn(big)
    rss_small = pod.idle.per_conn(small) / ceiling.idle.per_conn(small)
    lines.append(
        f"- **{verdict(rss_ratio <= GOALS['rss_ratio'])}** RSS per idle connection at {big:,} "
        f"connections: deltagate {pod.idle.per_conn(big) / 1024:.1f} KiB vs ceiling "
        f"{ceiling.idle.per_conn(big) / 1024:.1f} KiB = **{rss_ratio:.2f}x** (goal <= "
        f"{GOALS['rss_ratio']:.1f}x; at {small:,} connections: {rss_small:.2f}x)"
    )
    replay_ok = pod.replay.median < GOALS["replay_s"] and min(pod.replay.events) == REPLAY_EVENTS
    lines.append(
        f"- **{verdict(replay_ok)}** replay of {REPLAY_EVENTS:,} events to one client: "
        f"deltagate **{pod.replay.median:.2f} s** (goal < {GOALS['replay_s']:g} s; ceiling, from "
        f"memory: {ceiling.replay.median:.2f} s; deltagate/ceiling = "
        f"{pod.replay.median / ceiling.replay.median:.2f}x)"
    )
    assert pod.storm is not None and ceiling.storm is not None
    storm_ok = pod.storm.complete and pod.storm.seconds < GOALS["storm_s"]
    lines.append(
        f"- **{verdict(storm_ok)}** reconnect storm ({STORM_CLIENTS:,} clients resuming "
        f"{STORM_EVENTS:,} events each): deltagate **{pod.storm.seconds:.2f} s** (goal < "
        f"{GOALS['storm_s']:g} s; ceiling {ceiling.storm.seconds:.2f} s"
        + ("" if pod.storm.complete else "; NOT every client got all its events")
        + ")"
    )

    runs = "one run" if plan.replay_runs == 1 else f"median of {plan.replay_runs} runs"
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    notes = [n for r in results for n in r.notes]
    parts = [
        "## WebSocket fan-out",
        "Two servers, started side by side in the same run and driven alternately by the same "
        "load generator (each phase and each rate runs on the ceiling, then on deltagate, so a "
        "burst of other work on the host hits both): the **ceiling** (`bench/_ceiling.py`: a "
        "plain Starlette WebSocket route plus a POST route that broadcasts each posted event as "
        "the same `event` frame to every socket through a per-connection queue and writer, "
        'under uvicorn with uvloop and `ws="websockets-sansio"`, no Redis) and **deltagate** '
        "(one `deltagate serve` pod, auth disabled, on the run's private `redis-server`).",
        f"The load generator (`bench/_loadgen.py`, picows on uvloop) runs in {SUB_WORKERS} "
        "subscriber processes and 1 appender process; their CPU is in the tables (the busiest "
        f"used {worst_lg:.0%} of a core in any step, so it was not the bottleneck). Subscribers "
        "subscribe to `*` from `latest`. The appender POSTs one event per request (~360-byte "
        "order events over 100 streams) open-loop at the target rate over "
        f"{APPEND_CONNECTIONS} keep-alive connections; each event carries `data.sentAt` "
        "(`time.time()` when the request is written), so latency = subscriber receive time - "
        "sentAt on the same clock: append call + Redis + fan-out + socket writes. Each step: "
        f"{plan.warmup:g} s warm-up, {plan.duration:g} s measured, then up to {plan.drain:g} s "
        "for the window's events still in flight; events not received by then count as lost "
        "(infinitely late) in the percentiles. After a step over the limit that server's "
        "subscribers reconnect, so its backlog does not leak into the next step. CPU is the "
        "share of one core over the measured window (`/proc/PID/stat` utime+stime), RSS at the "
        "window's end.",
        "**Shared, noisy host**: its 2 cores hold the servers, Redis, the load generator and "
        "whatever else runs on the host meanwhile (load average at the end "
        f"of this section: {loadavg}). Absolute figures move by tens of percent between runs, "
        "p99 most of all (a server that loses its core for a few scheduler slices shows it "
        "there); the ratios to the ceiling, measured seconds apart, are the useful part. This "
        f"section took {elapsed:.0f} s.",
        f"### 1,000 subscribers at {', '.join(str(r) for r in FIXED_RATES)} events/s",
        fixed,
        "### Highest rate with p99 under 100 ms (1,000 subscribers)",
        f"Rates {', '.join(str(x) for x in plan.ladder)} ev/s in turn, each server until its "
        "first failure"
        + (
            " (a failing step is run a second time before it counts: one scheduler hiccup on "
            "this shared host can spoil a p99)"
            if plan.confirm
            else ""
        )
        + f"; then up to {plan.bisections} geometric bisection(s) between its highest passing "
        "and first failing rate. A step fails when p99 >= 100 ms or it falls behind (more than "
        "1% of the window's deliveries lost, deliveries/s under 90% of offered, the appender "
        "under 90% of the target, or an append error).",
        search,
    ]
    if extra:
        parts += ["Steps besides the fixed rates:", table(STEP_HEADERS, extra)]
    parts += [
        "### RSS per idle connection",
        "Connections open and subscribed to `*` (no events flowing); RSS growth from before "
        "the first connection (after a warm-up of 20 connections, closed again) divided by the "
        "number of connections.",
        idle_table,
        f"### Replay of {REPLAY_EVENTS:,} events to one client",
        f"{REPLAY_EVENTS:,} events appended in batches of {REPLAY_BATCH:,} first; then one client "
        f"subscribes from `earliest`: time from sending `subscribe` to receiving `caughtUp` "
        f"({runs}). The ceiling replays from memory.",
        replay_table,
        f"### Reconnect storm: {STORM_CLIENTS:,} clients resuming {STORM_EVENTS:,} events each",
        f"{STORM_CLIENTS:,} clients subscribe (from `latest`), note the head and disconnect; "
        f"{STORM_EVENTS:,} events are appended; then all reconnect at once and subscribe from "
        "that head. Time from the first connect to the last `caughtUp`; each client must have "
        f"received exactly the {STORM_EVENTS:,} events before it. A refused connection (closed "
        "by the server, or `subscribe` answered with an error) is retried like a real client "
        "would: jittered backoff from 0.1 s, doubling to 2 s.",
        storm_table,
        "### Goals (ratios to the ceiling measured in this run)",
        "\n".join(lines),
        saturation,
    ]
    if notes:
        parts += ["\n".join(f"- {n}" for n in notes)]
    return "\n\n".join(parts)


async def main(ctx: Context) -> str:
    if importlib.util.find_spec("picows") is None:
        raise SystemExit("bench/fanout.py needs picows: pip install -e '.[dev]' (or picows)")
    raise_nofile()
    started = time.monotonic()
    plan = Plan.of(ctx)
    lg = LoadGen()
    admin = aioredis.Redis(port=ctx.redis_port, decode_responses=True)
    servers = [ceiling(ctx), pod(ctx)]
    try:
        await lg.start(ctx.python)
        await asyncio.gather(*(launch(s.process, READY_SECONDS) for s in servers))
        results = await Bench(ctx, lg, admin).measure(servers)
    finally:
        for server in servers:
            server.process.stop(timeout=20)
        await lg.stop()
        await admin.aclose()
    return report(results, plan, time.monotonic() - started)
