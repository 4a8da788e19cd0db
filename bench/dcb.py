"""DCB conditional appends against plain appends, through the broker (issue 14's goal: a DCB
append whose condition's index matches 10 of 1M events costs at most 1.5x a plain append per
event).

A store is filled with ``PRELOAD`` order events (tagged ``customer:<n>``) and ``MATCHING`` events
of type ``user.registered`` tagged ``username:alice`` spread among them. Then, alternating,
``ctx.repeats`` times each, closed-loop with ``CONCURRENCY`` tasks keeping one append in flight:

- plain: ``EventLog.append`` of one order event to one of 1,000 streams, expected version any;
- DCB: ``EventLog.append_dcb`` of one ``user.renamed`` event with the condition "no
  ``user.registered`` event tagged ``username:alice`` after the head at the start" (DeltaBase's
  uniqueness rule). The index holds the 10 matches, all before ``after``, so every append passes.

The cost per event is CPU: Redis' (the scripts) plus this process's (encoding, redis-py), both
measured over the window; events/s beside it.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from _append_report import CONCURRENCY
from _common import Context, closed_loop, num, progress, redis_cpu, table, verdict

from broker import EventLog, NewEvent, Query, QueryItem, RedisConfig, connect

STORE = "dcb"
MATCHING = 10
BATCH = 1000
GOAL = 1.5


def order(rng: random.Random) -> NewEvent:
    return NewEvent(
        "order.placed",
        {"orderId": f"ord-{rng.randrange(10**10):010d}", "totalAmount": rng.randrange(500)},
        tags=(f"customer:{rng.randrange(10**5)}",),
    )


async def preload(log: EventLog, total: int) -> int:
    rng = random.Random(7)
    every = total // MATCHING
    done = 0
    while done < total:
        batch = [order(rng) for _ in range(BATCH)]
        await log.append(STORE, f"order-{done // BATCH % 1000}", batch, auto_create=True)
        done += BATCH
        if done % every == 0:
            user = NewEvent("user.registered", {"name": "alice"}, tags=("username:alice",))
            await log.append_dcb(STORE, [user], auto_create=True)
    head = (await log.append(STORE, "order-0", [order(rng)])).last_position
    return head


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def phase(log: EventLog, admin: Any, ctx: Context, dcb: bool, after: int) -> dict[str, float]:
    rng = random.Random(11 if dcb else 13)
    condition = Query((QueryItem(("user.registered",), ("username:alice",)),))

    async def plain(i: int) -> None:
        await log.append(STORE, f"order-{i % 1000}", [order(rng)])

    async def conditional(i: int) -> None:
        renamed = NewEvent("user.renamed", {"name": f"bob-{i}"}, tags=(f"username:bob-{i}",))
        await log.append_dcb(STORE, [renamed], condition=condition, after=after)

    work = conditional if dcb else plain
    before: dict[str, float] = {}

    async def start() -> None:
        before["redis"] = await redis_cpu(admin)
        before["own"] = own_cpu()

    window = await closed_loop(
        [work] * CONCURRENCY, warmup=ctx.warmup, duration=ctx.duration, on_start=start
    )
    redis_s = await redis_cpu(admin) - before["redis"]
    own_s = own_cpu() - before["own"]
    n = max(window.requests, 1)
    return {
        "rate": window.rate,
        "redis_us": redis_s / n * 1e6,
        "own_us": own_s / n * 1e6,
        "p99_ms": window.p(0.99) * 1e3,
    }


async def main(ctx: Context) -> str:
    total = 100_000 if ctx.quick else 1_000_000
    client = connect(RedisConfig(url=ctx.redis_url))
    log = EventLog(client)
    started = time.perf_counter()
    try:
        head = await preload(log, total)
        progress(f"dcb: {num(head)} events preloaded in {time.perf_counter() - started:.1f} s")
        runs: dict[str, list[dict[str, float]]] = {"plain": [], "dcb": []}
        for _ in range(ctx.repeats):
            for kind in ("plain", "dcb"):
                got = await phase(log, client, ctx, kind == "dcb", head)
                runs[kind].append(got)
                progress(
                    f"  {kind}: {num(got['rate'])} events/s, Redis {got['redis_us']:.1f} us + "
                    f"client {got['own_us']:.1f} us per event"
                )
    finally:
        await client.aclose()

    def med(kind: str, field: str) -> float:
        values = sorted(r[field] for r in runs[kind])
        return values[len(values) // 2]

    def spread(kind: str, field: str) -> str:
        values = sorted(r[field] for r in runs[kind])
        return f"{values[0]:.1f}-{values[-1]:.1f}"

    rows = []
    for kind, label in (("plain", "plain append, 1 event"), ("dcb", "DCB append, 1 event")):
        total_us = med(kind, "redis_us") + med(kind, "own_us")
        rows.append(
            [
                label,
                num(med(kind, "rate")),
                f"{med(kind, 'redis_us'):.1f} ({spread(kind, 'redis_us')})",
                f"{med(kind, 'own_us'):.1f} ({spread(kind, 'own_us')})",
                f"{total_us:.1f}",
                f"{med(kind, 'p99_ms'):.2f}",
            ]
        )
    plain_us = med("plain", "redis_us") + med("plain", "own_us")
    dcb_us = med("dcb", "redis_us") + med("dcb", "own_us")
    ratio = dcb_us / plain_us
    return "\n\n".join(
        [
            "## DCB conditional append",
            f"A store of {num(head)} events, {MATCHING} of them `user.registered` tagged "
            "`username:alice`; the DCB append's condition is DeltaBase's uniqueness rule "
            f"(no such event after the head at the start), checked by the type and tag indexes. "
            f"{CONCURRENCY} tasks each keep one append in flight through `EventLog` (no HTTP); "
            f"{ctx.runs}, plain and DCB alternating, each {ctx.warmup:g} s warm-up then "
            f"{ctx.duration:g} s measured. CPU per event: Redis (the scripts) plus the benchmark "
            "process (encoding, redis-py); medians with the range of the runs.",
            table(
                [
                    "append",
                    "events/s",
                    "Redis us/event",
                    "client us/event",
                    "CPU us/event",
                    "p99 ms",
                ],
                rows,
            ),
            f"DCB / plain CPU per event: **{ratio:.2f}x** (goal at most {GOAL}x): "
            f"{verdict(ratio <= GOAL)}.",
        ]
    )
