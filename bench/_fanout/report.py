"""The fan-out section of bench/RESULTS.md: the setup in prose, one table per phase, and the goals
as ratios to the ceiling measured in the same run. Pure formatting: nothing here measures."""

from __future__ import annotations

import math
import os

from _common import num, table, verdict

from .plan import (
    APPEND_CONNECTIONS,
    FIXED_RATES,
    GOALS,
    IDLE_COUNTS,
    REPLAY_BATCH,
    REPLAY_EVENTS,
    STORM_CLIENTS,
    STORM_EVENTS,
    SUB_WORKERS,
    Plan,
)
from .results import Result


def ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "lost"
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1e3:,.1f}"


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def report(results: list[Result], plan: Plan, elapsed: float) -> str:
    ceiling, pod = results
    parts = [
        "## WebSocket fan-out",
        *setup(results, plan, elapsed),
        f"### 1,000 subscribers at {', '.join(str(r) for r in FIXED_RATES)} events/s",
        table(STEP_HEADERS, [step_row(r, rate) for rate in FIXED_RATES for r in results]),
        "### Highest rate with p99 under 100 ms (1,000 subscribers)",
        climb_text(plan),
        search_table(results),
    ]
    others = sorted({x for r in results for x in r.steps} - set(FIXED_RATES))
    extra = [step_row(r, rate) for rate in others for r in results if rate in r.steps]
    if extra:
        parts += ["Steps besides the fixed rates:", table(STEP_HEADERS, extra)]
    parts += [
        "### RSS per idle connection",
        "Connections open and subscribed to `*` (no events flowing); RSS growth from before "
        "the first connection (after a warm-up of 20 connections, closed again) divided by the "
        "number of connections.",
        idle_table(results),
        f"### Replay of {REPLAY_EVENTS:,} events to one client",
        f"{REPLAY_EVENTS:,} events appended in batches of {REPLAY_BATCH:,} first; then one client "
        f"subscribes from `earliest`: time from sending `subscribe` to receiving `caughtUp` "
        f"({replay_runs(plan)}). The ceiling replays from memory.",
        replay_table(results),
        f"### Reconnect storm: {STORM_CLIENTS:,} clients resuming {STORM_EVENTS:,} events each",
        f"{STORM_CLIENTS:,} clients subscribe (from `latest`), note the head and disconnect; "
        f"{STORM_EVENTS:,} events are appended; then all reconnect at once and subscribe from "
        "that head. Time from the first connect to the last `caughtUp`; each client must have "
        f"received exactly the {STORM_EVENTS:,} events before it. A refused connection (closed "
        "by the server, or `subscribe` answered with an error) is retried like a real client "
        "would: jittered backoff from 0.1 s, doubling to 2 s.",
        storm_table(results),
        "### Goals (ratios to the ceiling measured in this run)",
        "\n".join(goals(ceiling, pod, plan)),
        saturation(ceiling, pod),
    ]
    notes = [n for r in results for n in r.notes]
    if notes:
        parts += ["\n".join(f"- {n}" for n in notes)]
    return "\n\n".join(parts)


# -- prose ------------------------------------------------------------------------------------


def setup(results: list[Result], plan: Plan, elapsed: float) -> list[str]:
    """The paragraphs on the servers, the load generator and the host."""
    worst_lg = max(c for r in results for s in r.steps.values() for c in s.loadgen_cpu)
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
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
    ]


def climb_text(plan: Plan) -> str:
    """How the highest rate was searched for."""
    return (
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
        "under 90% of the target, or an append error)."
    )


def replay_runs(plan: Plan) -> str:
    return "one run" if plan.replay_runs == 1 else f"median of {plan.replay_runs} runs"


# -- tables -----------------------------------------------------------------------------------

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


def search_table(results: list[Result]) -> str:
    def climb(r: Result) -> str:
        return ", ".join(
            f"{rate}: "
            + (f"{ms(r.retried[rate].p99)} x then " if rate in r.retried else "")
            + ms(r.steps[rate].p99)
            + ("" if r.steps[rate].ok else " x")
            for rate in sorted(r.steps)
        )

    return table(
        ["server", "rate: p99 ms (x = over 100 ms or falling behind)", "highest rate, ev/s"],
        [[r.name, climb(r), r.highest or "< 10"] for r in results],
    )


def idle_table(results: list[Result]) -> str:
    rows = []
    for r in results:
        idle = r.idle
        assert idle is not None
        rows.append(
            [r.name, mib(idle.base_rss)]
            + [
                f"{mib(idle.rss[n])} MiB, **{idle.per_conn(n) / 1024:.1f} KiB/conn** "
                f"(opened in {idle.connect_s[n]:.1f} s)"
                for n in IDLE_COUNTS
            ]
            + [f"{idle.refused:,}"]
        )
    return table(
        ["server", "RSS before, MiB"]
        + [f"{n:,} connections" for n in IDLE_COUNTS]
        + ["connects refused (retried)"],
        rows,
    )


def replay_table(results: list[Result]) -> str:
    return table(
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


def storm_table(results: list[Result]) -> str:
    rows = []
    for r in results:
        st = r.storm
        assert st is not None
        rows.append(
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
    return table(
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
        rows,
    )


# -- goals ------------------------------------------------------------------------------------


def goals(ceiling: Result, pod: Result, plan: Plan) -> list[str]:
    """One line per goal: PASS or FAIL, deltagate's figure, the ceiling's beside it."""
    return [
        rate_goal(ceiling, pod, plan),
        p99_goal(ceiling, pod),
        rss_goal(ceiling, pod),
        replay_goal(ceiling, pod),
        storm_goal(ceiling, pod),
    ]


def rate_goal(ceiling: Result, pod: Result, plan: Plan) -> str:
    if not ceiling.highest:
        return (
            "- **FAIL** highest rate with p99 < 100 ms: not measurable in this run, the ceiling "
            f"itself missed it at the lowest rate ({min(plan.ladder)} ev/s; deltagate: "
            f"{pod.highest or '< 10'})"
        )
    ratio = pod.highest / ceiling.highest
    return (
        f"- **{verdict(ratio >= GOALS['rate_ratio'])}** highest rate with p99 < 100 ms: "
        f"deltagate {pod.highest or '< 10'} ev/s vs ceiling {ceiling.highest} ev/s = "
        f"**{ratio:.0%}** of the ceiling (goal >= {GOALS['rate_ratio']:.0%})"
    )


def p99_goal(ceiling: Result, pod: Result) -> str:
    at50, c50 = pod.steps[50], ceiling.steps[50]
    return (
        f"- **{verdict(at50.ok and at50.p99 < GOALS['p99_at_50'])}** p99 at 1,000 subscribers x "
        f"50 events/s: deltagate **{ms(at50.p99)} ms** (goal < 50 ms; ceiling {ms(c50.p99)} ms "
        f"in the same run: deltagate/ceiling = {at50.p99 / c50.p99:.2f})"
    )


def rss_goal(ceiling: Result, pod: Result) -> str:
    assert pod.idle is not None and ceiling.idle is not None
    big, small = IDLE_COUNTS[-1], IDLE_COUNTS[0]
    rss_ratio = pod.idle.per_conn(big) / ceiling.idle.per_conn(big)
    rss_small = pod.idle.per_conn(small) / ceiling.idle.per_conn(small)
    return (
        f"- **{verdict(rss_ratio <= GOALS['rss_ratio'])}** RSS per idle connection at {big:,} "
        f"connections: deltagate {pod.idle.per_conn(big) / 1024:.1f} KiB vs ceiling "
        f"{ceiling.idle.per_conn(big) / 1024:.1f} KiB = **{rss_ratio:.2f}x** (goal <= "
        f"{GOALS['rss_ratio']:.1f}x; at {small:,} connections: {rss_small:.2f}x)"
    )


def replay_goal(ceiling: Result, pod: Result) -> str:
    replay_ok = pod.replay.median < GOALS["replay_s"] and min(pod.replay.events) == REPLAY_EVENTS
    return (
        f"- **{verdict(replay_ok)}** replay of {REPLAY_EVENTS:,} events to one client: "
        f"deltagate **{pod.replay.median:.2f} s** (goal < {GOALS['replay_s']:g} s; ceiling, from "
        f"memory: {ceiling.replay.median:.2f} s; deltagate/ceiling = "
        f"{pod.replay.median / ceiling.replay.median:.2f}x)"
    )


def storm_goal(ceiling: Result, pod: Result) -> str:
    assert pod.storm is not None and ceiling.storm is not None
    storm_ok = pod.storm.complete and pod.storm.seconds < GOALS["storm_s"]
    return (
        f"- **{verdict(storm_ok)}** reconnect storm ({STORM_CLIENTS:,} clients resuming "
        f"{STORM_EVENTS:,} events each): deltagate **{pod.storm.seconds:.2f} s** (goal < "
        f"{GOALS['storm_s']:g} s; ceiling {ceiling.storm.seconds:.2f} s"
        + ("" if pod.storm.complete else "; NOT every client got all its events")
        + ")"
    )


def saturation(ceiling: Result, pod: Result) -> str:
    """The CPU per delivery of both servers flat out, for reference."""
    top = max(FIXED_RATES)
    flat_pod, flat_ceiling = pod.steps[top], ceiling.steps[top]
    return (
        f"For reference, flat out ({top} ev/s offered, both servers behind): the server CPU per "
        f"delivery, the steadiest figure on a shared host, was "
        f"{num(flat_pod.us_per_delivery, 1)} us for deltagate vs "
        f"{num(flat_ceiling.us_per_delivery, 1)} us for the ceiling "
        f"(**{flat_pod.us_per_delivery / flat_ceiling.us_per_delivery:.2f}x**); deliveries/s "
        f"{num(flat_pod.deliveries)} vs {num(flat_ceiling.deliveries)} "
        f"({flat_pod.deliveries / flat_ceiling.deliveries:.0%}), which also depends on how much "
        "of a core each got while other work ran."
    )
