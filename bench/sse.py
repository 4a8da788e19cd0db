"""Server-Sent Events beside WebSockets (issue 16): one deltagate pod (auth on, real Redis), the
same subscribers and the same appends over each transport, in the same run. And, on the
WebSocket, what a subscription's filter costs per delivery: every event (``*``), a type filter
(``order.*``), and the same type filter with a content filter (``match`` on the event's data,
which every event passes) (issue 14: a content-filtered subscription costs no more per delivery
than a type filter).

Run by ``bench/run.py`` (alone: ``.venv/bin/python bench/run.py --only sse [--quick]``).

It drives the fan-out benchmark's parts (``bench/_fanout/``) and load generator
(``bench/_loadgen.py``: two subscriber processes and an appender process). SSE subscribers there
are raw keep-alive HTTP/1.1 ``GET``s reading the chunked ``text/event-stream``
(``bench/_wsclients.py``'s ``SseClient``); WebSocket ones are picows clients. Two phases:

1. RSS per idle connection, SSE and WebSocket alternating, a fresh pod per repetition: RSS after
   a small warm-up (20 subscribers, 20 events, gone again), then with 1,000 and 5,000 idle
   subscribed connections (200 and 1,000 with ``--quick``); growth / connections.
2. 1,000 subscribers per row, each row its own store on one pod (all rows' connections open at
   once, only the measured row's store is appended to), at a paced 100 events/s (one event per
   append, open-loop), the rows alternating. Per row: the pod's CPU per delivery (its CPU in the
   measured window / event messages received in it), p50 and p99 latency (receive time minus the
   event's ``data.sentAt``, stamped by the appender when it writes the request, the same host
   clock) and the events lost (not received by the end of the drain: they count as infinitely
   late in the percentiles).
"""

from __future__ import annotations

import dataclasses

import redis.asyncio as aioredis
from _common import Context, Spread, api_keys, num, progress, raise_nofile, verdict
from _fanout import phases, servers
from _fanout.plan import SUB_WORKERS, SUBSCRIBERS, Plan
from _fanout.rates import Load, scenario
from _fanout.report import idle_table, steps_table
from _fanout.results import Idle, Steps
from _fanout.rig import Rig
from _fanout.servers import DELTAGATE, DELTAGATE_SSE
from _fanout.workers import LoadGen

RATE = 100
"""Events/s appended to the measured row's store: 100,000 deliveries/s to 1,000 subscribers."""
WS = "websocket"
WS_TYPE = "websocket, type filter"
WS_CONTENT = "websocket, type + content filter"
SSE = "sse"
FILTERS: dict[str, tuple[object, ...] | None] = {
    WS: None,
    WS_TYPE: ("order.*",),
    WS_CONTENT: ({"eventFilter": "order.*", "match": {"data": {"currency": "EUR"}}},),
    SSE: None,
}
"""What each row's subscribers subscribe to (None: ``*``); every appended event
(``order.placed``, ``currency: EUR``) matches all of them, so each row delivers the same."""


def plan_of(ctx: Context) -> Plan:
    if ctx.quick:
        return Plan(1, 0.5, 2.0, 1.0, (RATE,), (200, 1000), settle=0.5)
    return Plan(3, 1.0, 3.0, 2.0, (RATE,), (1000, 5000), settle=1.0)


async def main(ctx: Context) -> str:
    raise_nofile()  # the pods inherit it: 5,000 sockets and more
    plan = plan_of(ctx)
    keys = await api_keys(ctx)
    lg = LoadGen()
    admin = aioredis.Redis(port=ctx.redis_port, decode_responses=True)
    rig = Rig(plan, lg, admin)
    names = [DELTAGATE_SSE, DELTAGATE]
    try:
        await lg.start(ctx.python)
        idle = await phases.idle(rig, ctx, keys, names)
        pod = servers.make(ctx, DELTAGATE, keys)
        await pod.start()
        try:
            over_sse = dataclasses.replace(pod, name=DELTAGATE_SSE, proto="sse")  # the same pod
            loads = [
                Load(over_sse if row == SSE else pod, f"sse-{i}", SUBSCRIBERS, row, filters)
                for i, (row, filters) in enumerate(FILTERS.items())
            ]
            steps = await scenario(rig, loads, plan.rates)
            pod.alive()
        finally:
            pod.stop()
    finally:
        await lg.stop()
        await admin.aclose()
    return report(plan, idle, steps)


def median(steps: Steps, row: str, figure: str) -> float:
    return steps.spread(row, RATE, lambda s: float(getattr(s, figure))).median


def issue16(plan: Plan, idle: dict[str, Idle], steps: Steps) -> str:
    """The verdict line: the SSE figures issue 16 asks for are there, beside the WebSocket's,
    and nothing was lost."""
    runs = [s for row in FILTERS for s in steps.get(row, RATE)]
    lost = sum(s.lost for s in runs)
    count = plan.idle_counts[-1]
    sse_kib, ws_kib = idle[DELTAGATE_SSE].kib(count), idle[DELTAGATE].kib(count)
    measured = [
        median(steps, row, f) for row in (SSE, WS) for f in ("us_per_delivery", "p50", "p99")
    ] + [sse_kib.median, ws_kib.median]
    there = all(v == v and v != float("inf") for v in measured)  # no NaN, nothing infinitely late
    us, p50, p99 = (
        f"{num(median(steps, SSE, f) * k, 1)} (WebSocket {num(median(steps, WS, f) * k, 1)})"
        for f, k in (("us_per_delivery", 1), ("p50", 1e3), ("p99", 1e3))
    )
    return (
        f"- **{verdict(there and lost == 0)}** issue 16, SSE fan-out at {SUBSCRIBERS:,} "
        f"subscribers x {RATE} events/s beside the WebSocket, medians: pod CPU {us} µs per "
        f"delivery, p50 {p50} ms, p99 {p99} ms, RSS {sse_kib.median:.1f} "
        f"(WebSocket {ws_kib.median:.1f}) KiB per idle connection at {count:,}; "
        f"{lost:,} events lost over every row and run."
    )


def loadgen_note(steps: Steps) -> str:
    busiest = max((c for s in steps.all() for c in s.loadgen_cpu[:-1]), default=0.0)
    near = " (near a core: the figures may be the load generator's limit)" if busiest > 0.8 else ""
    return (
        f"The busiest subscriber process of the load generator used {busiest:.0%} of a core in a "
        f"measured window{near}."
    )


def report(plan: Plan, idle: dict[str, Idle], steps: Steps) -> str:
    pairs = zip(steps.get(SSE, RATE), steps.get(WS, RATE), strict=True)  # run by run
    ratio = Spread.of([a.us_per_delivery / b.us_per_delivery for a, b in pairs])
    progress(f"sse: SSE / WebSocket CPU per delivery {ratio.text(2)}")
    return "\n\n".join(
        [
            "## sse",
            "Server-Sent Events beside WebSockets on one deltagate pod (auth on, real Redis), "
            f"measured in the same run, {plan.repetitions} (median (min..max)). Subscribers in "
            f"{SUB_WORKERS} load generator processes (`bench/_loadgen.py`): SSE ones are raw "
            "keep-alive HTTP/1.1 `GET`s parsing the chunked `text/event-stream` "
            "(`id:`/`event:`/`data:`), WebSocket ones picows clients.",
            f"### {SUBSCRIBERS:,} subscribers at {RATE} events/s",
            "One event per append request (open-loop, paced), ~360 B, each row its own store on "
            "one pod; every subscriber gets every event. Subscribed to `*` (websocket, sse), "
            '`order.*` (type filter), `order.*` with `match: {data: {currency: "EUR"}}` (type + '
            "content filter): every event matches each, so every row delivers the same. "
            "Latency = receive time - the event's `data.sentAt` (stamped when the append request "
            "is written; same host clock): append + Redis + fan-out + socket writes. CPU per "
            "delivery = the pod's CPU in the measured window / event messages received in it "
            "(Redis' apart). Lost = the window's events not received by the end of the drain "
            "(infinitely late in the percentiles). A row passes when p99 < 100 ms and it keeps "
            "up (on a busy host it may not: the latencies are then the host's).",
            steps_table(steps),
            issue16(plan, idle, steps),
            f"- SSE / WebSocket (`*`) pod CPU per delivery, per run: {ratio.text(2)}. "
            + loadgen_note(steps),
            "### RSS per idle connection",
            "A fresh pod per transport and repetition, alternating: RSS (`VmRSS`) after a "
            "warm-up of 20 subscribers and 20 events (then closed), then with "
            f"{' and '.join(f'{n:,}' for n in plan.idle_counts)} idle subscribed connections "
            "(`*`, from `latest`); growth / connections. Each connection is the client's "
            "socket, the pod's request or WebSocket session, its outbox and its subscription.",
            idle_table(list(idle), idle, plan.idle_counts),
        ]
    )
