"""The rate phases: 1,000 subscribers on each server while the appender posts events open-loop at
a target rate. Every fixed rate runs on both servers; above them each server climbs a ladder of
rates until its first failure (p99 over the limit, or falling behind), then bisects towards its
highest passing rate. Rates alternate between the servers, so a burst of other work on the shared
host hits both alike.

One ``step`` is one rate on one server: the subscribers count what arrives inside a measured
window, CPU clocks are read at its edges, and the window's events still in flight get the plan's
drain time before the latency histogram is read.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import num, progress, redis_cpu
from _histogram import hist_percentile

from .plan import APPEND_CONNECTIONS, FIXED_RATES, SUBSCRIBERS
from .report import ms
from .results import Result, Step
from .rig import Rig
from .servers import Server
from .workers import LoadGen


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


def nice(value: float) -> int:
    """Two significant digits."""
    digits = max(0, math.floor(math.log10(value)) - 1)
    return int(round(value / 10**digits) * 10**digits)


@dataclass(frozen=True)
class Clocks:
    """The CPU clocks read at one edge of a measured window."""

    server: float
    loadgen: list[float]
    host: tuple[int, int, int]
    redis: float | None
    """Redis' CPU, for a server on Redis."""

    @classmethod
    async def read(cls, rig: Rig, server: Server) -> Clocks:
        server_cpu, loadgen, host = server.cpu(), rig.lg.cpu(), host_cpu()
        redis = await redis_cpu(rig.admin) if server.on_redis else None
        return cls(server_cpu, loadgen, host, redis)


async def subscribe(rig: Rig, server: Server) -> None:
    got = await rig.lg.connect(f"rate-{server.name}", server.url("fanout"), SUBSCRIBERS)
    if got["connected"] != SUBSCRIBERS:
        raise RuntimeError(f"{server.name}: only {got['connected']} subscribers connected")


async def resubscribe(rig: Rig, server: Server) -> None:
    """After a step that fell behind: drop the backlog with the connections, start fresh."""
    await rig.lg.close(f"rate-{server.name}")
    await rig.settle(1.0)
    server.alive()
    await subscribe(rig, server)
    await asyncio.sleep(0.5)


async def step(rig: Rig, server: Server, rate: int) -> Step:
    """One rate on one server, measured."""
    plan, lg = rig.plan, rig.lg
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
    before = await Clocks.read(rig, server)
    await sleep_until(s1)
    after = await Clocks.read(rig, server)
    rss = server.rss()
    appended = await appending
    stats = await drained_stats(rig, group, appended["in_window"])
    result = measured_step(rate, plan.duration, (before, after), rss, appended, stats)
    log_step(server, result)
    return result


async def drained_stats(rig: Rig, group: str, in_window: int) -> list[dict[str, Any]]:
    """Each subscriber process's counts, once it has the window's ``in_window`` events on every
    connection or the plan's drain time is over."""
    plan, lg = rig.plan, rig.lg
    per_worker = LoadGen.split(SUBSCRIBERS, len(lg.subs))
    await asyncio.gather(
        *(
            w.call("wait", plan.drain + 30, group=group, measured=in_window * n, timeout=plan.drain)
            for w, n in zip(lg.subs, per_worker, strict=True)
        )
    )
    return await lg.each("stats", group=group)


def measured_step(
    rate: int,
    seconds: float,
    clocks: tuple[Clocks, Clocks],
    rss: int,
    appended: dict[str, Any],
    stats: list[dict[str, Any]],
) -> Step:
    """The step from what the appender and the subscribers counted and the clocks at the edges
    of its measured window of ``seconds``."""
    before, after = clocks
    hist: dict[int, int] = {}
    for s in stats:
        for index, n in s["hist"]:
            hist[index] = hist.get(index, 0) + n
    measured = sum(s["measured"] for s in stats)
    expected = max(measured, appended["in_window"] * SUBSCRIBERS)
    ticks = max(1, after.host[0] - before.host[0])
    redis = None
    if after.redis is not None and before.redis is not None:
        redis = (after.redis - before.redis) / seconds
    return Step(
        rate=rate,
        subscribers=SUBSCRIBERS,
        appended=appended["in_window"] / seconds,
        deliveries=sum(s["in_window"] for s in stats) / seconds,
        p50=hist_percentile(hist, expected, 0.50),
        p99=hist_percentile(hist, expected, 0.99),
        missing=(expected - measured) / expected if expected else 0.0,
        server_cpu=(after.server - before.server) / seconds,
        rss=rss,
        loadgen_cpu=[(b - a) / seconds for a, b in zip(before.loadgen, after.loadgen, strict=True)],
        redis_cpu=redis,
        append_p99=appended["append_p99"],
        append_errors=appended["errors"],
        host_busy=(after.host[1] - before.host[1]) / ticks,
        host_steal=(after.host[2] - before.host[2]) / ticks,
        errors=[e for s in stats for e in s["errors"]]
        + ([appended["first_error"]] if appended["first_error"] else []),
    )


def log_step(server: Server, step: Step) -> None:
    progress(
        f"{server.name} {step.rate} ev/s: appended {step.appended:.0f}/s, "
        f"{num(step.deliveries)} deliveries/s, p50 {ms(step.p50)} p99 {ms(step.p99)} ms, "
        f"missing {step.missing:.1%}, server {step.server_cpu:.0%} CPU, "
        f"loadgen {' / '.join(f'{c:.0%}' for c in step.loadgen_cpu)}, "
        f"host busy {step.host_busy:.0%}" + (" -> ok" if step.ok else " -> over the limit")
    )


async def run_step(rig: Rig, result: Result, rate: int, climbing: bool = False) -> Step:
    """A step, recorded in ``result``. A failing step resubscribes (drops its backlog); while
    climbing, with the plan's ``confirm``, it runs once more before it counts."""
    server = result.server
    measured = await step(rig, server, rate)
    if not measured.ok:
        await resubscribe(rig, server)
        if climbing and rig.plan.confirm:
            result.retried[rate] = measured
            measured = await step(rig, server, rate)
            if not measured.ok:
                await resubscribe(rig, server)
    result.steps[rate] = measured
    if not measured.ok and climbing:
        if result.first_fail is None or rate < result.first_fail:
            result.first_fail = rate
    return measured


async def rates(rig: Rig, results: list[Result]) -> None:
    """Every server up the ladder, then the bisections; each server's ``highest`` rate."""
    for r in results:
        await subscribe(rig, r.server)
    await asyncio.sleep(0.5)
    try:
        await climb(rig, results)
        for r in results:
            r.highest = max(
                (x for x, s in r.steps.items() if s.ok and x < (r.first_fail or math.inf)),
                default=0,
            )
        for _ in range(rig.plan.bisections):
            await bisect(rig, results)
    finally:
        for r in results:
            await rig.lg.close(f"rate-{r.name}")
        await rig.settle(1.0)


async def climb(rig: Rig, results: list[Result]) -> None:
    """Up the ladder, alternating servers at each rate: a server stops climbing at its first
    failure, but every server runs every fixed rate."""
    for rate in rig.plan.ladder:
        for r in results:
            if r.first_fail is None:
                await run_step(rig, r, rate, climbing=True)
            elif rate in FIXED_RATES:
                await run_step(rig, r, rate)
        if all(r.first_fail is not None for r in results) and rate >= max(FIXED_RATES):
            break


async def bisect(rig: Rig, results: list[Result]) -> None:
    """Narrow the gap between each server's highest passing and first failing rate once."""
    for r in results:
        if r.first_fail is None or not r.highest:
            continue
        mid = nice(math.sqrt(r.highest * r.first_fail))
        if mid <= r.highest or mid >= r.first_fail or mid in r.steps:
            continue
        if (await run_step(rig, r, mid, climbing=True)).ok:
            r.highest = mid
