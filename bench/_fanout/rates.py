"""The rate scenarios: subscribers on each server while the appender posts events open-loop at a
target rate. Each step is one rate on one ``Load`` (a server, a store, a number of subscribers and
their filters); every step runs ``plan.repeats`` times, alternating: every load once at a rate,
then every load again, so a burst of other work on the shared host hits all of them alike.

One ``step``: the subscribers count what arrives inside a measured window, CPU clocks are read at
its edges, and the window's events still in flight get the plan's drain time before the latency
histogram is read. CPU per delivery = the server's CPU seconds in the window (utime + stime of
its processes, ``/proc/PID/stat``) / the event frames its subscribers received in the window.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import num, progress, redis_cpu
from _histogram import hist_percentile

from .plan import APPEND_CONNECTIONS
from .results import Step, Steps
from .rig import Rig
from .servers import Server
from .workers import LoadGen


@dataclass(frozen=True)
class Load:
    """What one row of a rate scenario drives: ``subscribers`` on ``server`` subscribed to
    ``store`` with ``filters`` (each connection the next in turn; default ``*``)."""

    server: Server
    store: str
    subscribers: int
    label: str
    filters: tuple[Any, ...] | None = None
    """Patterns, or dicts of a subscription's fields (``eventFilter``, ``match``, ...)."""
    sources: tuple[str, ...] | None = None
    """Loopback source addresses to spread the connections over."""

    @property
    def group(self) -> str:
        return f"{self.label}/{self.store}/{self.subscribers}"


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


@dataclass(frozen=True)
class Clocks:
    """The CPU clocks read at one edge of a measured window."""

    server: float
    parts: dict[str, float]
    loadgen: list[float]
    host: tuple[int, int, int]
    redis: float | None
    """Redis' CPU, for a server on Redis."""

    @classmethod
    async def read(cls, rig: Rig, server: Server) -> Clocks:
        parts = server.part_cpu()
        total, loadgen, host = server.cpu(), rig.lg.cpu(), host_cpu()
        redis = await redis_cpu(rig.admin) if server.on_redis else None
        return cls(total, parts, loadgen, host, redis)


async def subscribe(rig: Rig, load: Load) -> None:
    server = load.server
    await rig.make_store(server, load.store)
    got = await rig.lg.connect(
        load.group,
        server.url(load.store),
        load.subscribers,
        proto=server.proto,
        headers=server.read_headers,
        filters=list(load.filters) if load.filters else None,
        sources=list(load.sources) if load.sources else None,
    )
    if got["connected"] != load.subscribers:
        raise RuntimeError(
            f"{load.label}: only {got['connected']} of {load.subscribers} subscribers connected: "
            f"{got['errors'][:2]}"
        )


async def resubscribe(rig: Rig, load: Load) -> None:
    """After a step that fell behind: drop the backlog with the connections, start fresh."""
    await rig.lg.close(load.group)
    await rig.settle(1.0)
    load.server.alive()
    await subscribe(rig, load)
    await asyncio.sleep(0.5)


async def step(rig: Rig, load: Load, rate: int) -> Step:
    """One rate on one load, measured."""
    plan, lg, server = rig.plan, rig.lg, load.server
    start = time.time() + 0.3
    s0 = start + plan.warmup
    s1 = s0 + plan.duration
    for w in lg.subs:
        await w.call("window", group=load.group, s0=s0, s1=s1, t0=s0, t1=s1)
    appending = asyncio.create_task(
        lg.appender.call(
            "append",
            plan.warmup + plan.duration + 60,
            port=server.port,
            store=load.store,
            rate=rate,
            start=start,
            warmup=plan.warmup,
            duration=plan.duration,
            conns=APPEND_CONNECTIONS,
            headers=server.write_headers,
        )
    )
    await sleep_until(s0)
    before = await Clocks.read(rig, server)
    await sleep_until(s1)
    after = await Clocks.read(rig, server)
    rss = server.rss()
    appended = await appending
    stats = await drained_stats(rig, load, appended["in_window"])
    result = measured_step(load, rate, plan.duration, (before, after), rss, appended, stats)
    log_step(result)
    return result


async def drained_stats(rig: Rig, load: Load, in_window: int) -> list[dict[str, Any]]:
    """Each subscriber process's counts, once it has the window's ``in_window`` events on every
    connection or the plan's drain time is over."""
    plan, lg = rig.plan, rig.lg
    per_worker = LoadGen.split(load.subscribers, len(lg.subs))
    await asyncio.gather(
        *(
            w.call(
                "wait",
                plan.drain + 30,
                group=load.group,
                measured=in_window * n,
                timeout=plan.drain,
            )
            for w, n in zip(lg.subs, per_worker, strict=True)
        )
    )
    return await lg.each("stats", group=load.group)


def measured_step(
    load: Load,
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
    expected = max(measured, appended["in_window"] * load.subscribers)
    ticks = max(1, after.host[0] - before.host[0])
    redis = None
    if after.redis is not None and before.redis is not None:
        redis = (after.redis - before.redis) / seconds
    parts = {k: (after.parts[k] - before.parts[k]) / seconds for k in after.parts}
    return Step(
        label=load.label,
        rate=rate,
        subscribers=load.subscribers,
        appended=appended["in_window"] / seconds,
        deliveries=sum(s["in_window"] for s in stats) / seconds,
        p50=hist_percentile(hist, expected, 0.50),
        p99=hist_percentile(hist, expected, 0.99),
        slowest=max((s["slowest"] for s in stats), default=math.nan),
        missing=(expected - measured) / expected if expected else 0.0,
        lost=expected - measured,
        server_cpu=(after.server - before.server) / seconds - sum(parts.values()),
        parts_cpu=parts,
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


def ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "lost"
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1e3:,.1f}"


def log_step(step: Step) -> None:
    progress(
        f"{step.label} {step.subscribers} x {step.rate} ev/s: appended {step.appended:.0f}/s, "
        f"{num(step.deliveries)} deliveries/s, p50 {ms(step.p50)} p99 {ms(step.p99)} ms, "
        f"lost {step.lost} ({step.missing:.1%}), server {step.server_cpu:.0%} CPU = "
        f"{step.us_per_delivery:.1f} us/delivery, "
        f"loadgen {' / '.join(f'{c:.0%}' for c in step.loadgen_cpu)}, "
        f"host busy {step.host_busy:.0%}" + ("" if step.ok else " -> over the limit or behind")
    )


async def scenario(
    rig: Rig, loads: Sequence[Load], rates: Sequence[int], *, fresh: bool = False
) -> Steps:
    """Every rate on every load, ``plan.repeats`` times, alternating loads. A step that fell
    behind (or every step, with ``fresh``) is followed by fresh subscribers for that load."""
    steps = Steps()
    for load in loads:
        await subscribe(rig, load)
    await asyncio.sleep(0.5)
    try:
        for rate in rates:
            for _ in range(rig.plan.repeats):
                for load in loads:
                    measured = await step(rig, load, rate)
                    steps.add(measured)
                    if fresh or measured.behind:
                        await resubscribe(rig, load)
    finally:
        for load in loads:
            await rig.lg.close(load.group)
        await rig.settle(1.0)
    return steps
