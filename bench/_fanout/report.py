"""The fan-out section of bench/RESULTS.md: the setup in prose, the headline table, one table per
question, the figures, and the goals as ratios to the servers measured in the same run. Pure
formatting (and drawing): nothing here measures."""

from __future__ import annotations

import math
import os

from _common import Context, Spread, num, table, verdict

from .figures import figures, idle_spread
from .plan import (
    FLAT_RATE,
    FLAT_SUBSCRIBERS,
    GOALS,
    HEADLINE_RATES,
    MIX_FILTERS,
    REPLAY_EVENTS,
    STALL_MARGIN,
    STORM_CLIENTS,
    STORM_EVENTS,
    SUB_WORKERS,
    SUBSCRIBERS,
    Plan,
)
from .rates import ms
from .results import Idle, Measured, Step, Steps
from .servers import BARE, DELTAGATE, DESCRIPTIONS, NODE_WS, SOCKETIO

KiB = 1024


def us(step: Step) -> float:
    return step.us_per_delivery


def p99(step: Step) -> float:
    return step.p99


def report(m: Measured, plan: Plan, ctx: Context, elapsed: float) -> str:
    mix = next(label for label in m.rates.labels() if label not in m.names)
    parts = [
        "## WebSocket fan-out",
        *setup(m, plan, elapsed),
        f"### Headline ({plan.repetitions}: median (min..max))",
        headline(m),
        "\n".join(ratios(m)),
        *figures(m, ctx),
        f"### {SUBSCRIBERS:,} subscribers at {', '.join(map(str, m.rates.rates()))} events/s",
        "One event per append request, over 100 streams; every subscriber gets every event. "
        "Deliveries/s counts event frames received in the measured window; lost = the window's "
        "events not received by the end of the drain (they count as infinitely late in the "
        "percentiles). A step passes when p99 < 100 ms and it keeps up.",
        steps_table(m.rates),
        "### Filter matching: a complex-pattern mix beside `*`",
        f"deltagate with each subscriber on one of {', '.join(f'`{f}`' for f in MIX_FILTERS)} "
        "(all match `order.placed`: the same deliveries as `*`), measured in the same rotation "
        "as the rows above (issue 13: the linear-time matcher must cost no more per delivery).",
        mix_table(m.rates, mix),
        f"### {FLAT_SUBSCRIBERS} subscribers flat out",
        f"{FLAT_RATE:,} events/s offered (one per append request: {FLAT_RATE * FLAT_SUBSCRIBERS:,}"
        " deliveries/s), more than any server here sends on this host: each runs at its own "
        "limit, and CPU per delivery includes its handling of the append requests. Fresh "
        "subscribers after every step.",
        flat_table(m.flat),
        "### RSS per idle connection",
        "Connections open and subscribed (no events flowing) on a fresh server process per "
        "repetition: RSS growth from before the first connection (after a warm-up of 20 "
        "connections and 20 appends, closed again) divided by the connections.",
        idle_table(m.names, m.idle, m.idle_counts),
        *replay_parts(m),
        "### Goals (issue 19, this run's medians)",
        "\n".join(goals(m)),
    ]
    notes = list(m.notes)
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts)


# -- prose ----------------------------------------------------------------------------------


def setup(m: Measured, plan: Plan, elapsed: float) -> list[str]:
    steps = m.rates.all() + m.flat.all()
    worst = max((c for s in steps for c in s.loadgen_cpu[:-1]), default=0.0)
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    servers = "\n".join(f"- **{name}**: {DESCRIPTIONS[name]}" for name in m.names)
    return [
        "The servers, one process each on 127.0.0.1, started side by side and driven in turn "
        "by the same load generator; every step runs once on each server, then again "
        f"({plan.repetitions}), so a burst of other work on the host hits all of them:",
        servers,
        f"The load generator (`bench/_loadgen.py`, picows on uvloop) runs in {SUB_WORKERS} "
        "subscriber processes and 1 appender process (the busiest subscriber process used "
        f"{worst:.0%} of a core in any step). Subscribers subscribe from `latest`; the "
        "appender POSTs one ~360-byte order event per request, open-loop at the target rate "
        "over 16 keep-alive connections (with the write key for deltagate). Each event carries "
        "`data.sentAt`: latency = receive time - sentAt on the same clock (append call + "
        f"fan-out + socket writes). Each step: {plan.warmup:g} s warm-up, {plan.duration:g} s "
        f"measured, up to {plan.drain:g} s drain.",
        "**CPU per delivery** = the server's CPU time in the measured window (utime + stime of "
        "its processes from `/proc/PID/stat`) / the event frames its subscribers received in "
        "that window. For servers on Redis (deltagate, socket.io) Redis' CPU per delivery is "
        "reported beside it, not in it. **Memory per connection** = growth of the server's "
        "RSS (`VmRSS`) with idle subscribed connections / their number.",
        "**Shared, noisy host**: 2 cores hold the servers, Redis, the load generator and "
        f"whatever else runs meanwhile (load average at the end of this section: {loadavg}). "
        "Absolute times and p99s move by tens of percent between runs; ratios within one run "
        f"hold. This section took {elapsed / 60:.1f} min.",
    ]


# -- tables ---------------------------------------------------------------------------------


def headline(m: Measured) -> str:
    low, high = HEADLINE_RATES
    rows = []
    for name in m.names:
        rows.append(
            [
                f"**{name}**",
                m.rates.spread(name, low, us).text(1, bold=True),
                m.rates.spread(name, high, us).text(1, bold=True),
                m.flat.spread(name, FLAT_RATE, us).text(1),
                idle_spread(m, name, m.idle_counts[-1]).text(1, bold=True),
                m.rates.spread(name, low, p99).text(1, 1e3),
                m.rates.spread(name, high, p99).text(1, 1e3),
                m.flat.spread(name, FLAT_RATE, lambda s: s.deliveries).text(0),
            ]
        )
    return table(
        [
            "server",
            f"us CPU/delivery, {SUBSCRIBERS:,} x {low}/s",
            f"us CPU/delivery, {SUBSCRIBERS:,} x {high}/s",
            f"us CPU/delivery, {FLAT_SUBSCRIBERS} flat out",
            f"KiB/connection, {m.idle_counts[-1]:,} idle",
            f"p99 ms, {SUBSCRIBERS:,} x {low}/s",
            f"p99 ms, {SUBSCRIBERS:,} x {high}/s",
            f"deliveries/s, {FLAT_SUBSCRIBERS} flat out",
        ],
        rows,
    )


def ratio(a: Spread, b: Spread) -> str:
    if not a.values or not b.values or not b.median:
        return "-"
    return f"{a.median / b.median:.2f}x"


def ratios(m: Measured) -> list[str]:
    """deltagate's headline figures as ratios to each other server's, medians of this run."""
    if DELTAGATE not in m.names:
        return []
    lines = []
    for other in [n for n in m.names if n != DELTAGATE]:
        cpu = ", ".join(
            f"{SUBSCRIBERS:,} x {r}/s {ratio(m.rates.spread(DELTAGATE, r, us), m.rates.spread(other, r, us))}"  # noqa: E501
            for r in HEADLINE_RATES
        )
        flat = ratio(m.flat.spread(DELTAGATE, FLAT_RATE, us), m.flat.spread(other, FLAT_RATE, us))
        mem = ratio(
            idle_spread(m, DELTAGATE, m.idle_counts[-1]), idle_spread(m, other, m.idle_counts[-1])
        )
        lines.append(
            f"- deltagate / {other}: CPU per delivery {cpu}, flat out {flat}; memory per "
            f"connection {mem}"
        )
    return lines


def step_cells(steps: Steps, label: str, rate: int) -> list[str]:
    got = steps.get(label, rate)
    spread = steps.spread
    lg = max((c for s in got for c in s.loadgen_cpu[:-1]), default=0.0)
    redis = spread(label, rate, lambda s: s.redis_us_per_delivery)
    return [
        num(got[0].subscribers * rate) if got else "-",
        spread(label, rate, lambda s: s.deliveries).text(0),
        spread(label, rate, us).text(1, bold=True),
        "-" if not redis.values or math.isnan(redis.median) else redis.text(2),
        spread(label, rate, lambda s: s.p50).text(1, 1e3),
        spread(label, rate, p99).text(1, 1e3),
        ms(max((s.slowest for s in got), default=math.nan)),
        f"{max((s.lost for s in got), default=0):,} "
        f"({max((s.missing for s in got), default=0):.1%})",
        spread(label, rate, lambda s: s.server_cpu).text(0, 100) + " %",
        f"{lg:.0%}",
        f"{max((s.host_busy for s in got), default=0):.0%}",
        f"{sum(s.ok for s in got)}/{len(got)}",
    ]


STEP_HEADERS = [
    "offered deliveries/s",
    "deliveries/s",
    "us CPU/delivery",
    "Redis us/delivery",
    "p50 ms",
    "p99 ms",
    "slowest ms",
    "lost (worst)",
    "server CPU, % of a core",
    "loadgen CPU (busiest process)",
    "host busy (worst)",
    "passed",
]


def steps_table(steps: Steps) -> str:
    rows = [
        [f"{rate}", label, *step_cells(steps, label, rate)]
        for rate in steps.rates()
        for label in steps.labels()
        if steps.get(label, rate)
    ]
    return table(["events/s", "server", *STEP_HEADERS], rows)


def mix_table(steps: Steps, mix: str) -> str:
    rows = []
    for rate in steps.rates():
        star, mixed = steps.spread(DELTAGATE, rate, us), steps.spread(mix, rate, us)
        rows.append([rate, star.text(1), mixed.text(1), ratio(mixed, star)])
    return table(["events/s", "us/delivery, `*`", "us/delivery, filter mix", "mix / `*`"], rows)


def flat_table(steps: Steps) -> str:
    rows = [[label, *step_cells(steps, label, FLAT_RATE)] for label in steps.labels()]
    return table(["server", *STEP_HEADERS], rows)


def idle_table(names: list[str], idle: dict[str, Idle], counts: tuple[int, ...]) -> str:
    """RSS per idle connection of each server at each of ``counts`` connections."""
    rows = []
    for name in names:
        got = idle[name]
        cells = [name, Spread.of([b / 2**20 for b in got.base]).text(0)]
        for n in counts:
            seconds = Spread.of(got.connect_s.get(n, []))
            cells.append(f"{got.kib(n).text(1, bold=True)} (opened in {seconds.text(1)} s)")
        cells.append(f"{got.refused:,}")
        rows.append(cells)
    return table(
        ["server", "RSS before, MiB"]
        + [f"KiB/connection at {n:,}" for n in counts]
        + ["connects refused (retried)"],
        rows,
    )


def replay_parts(m: Measured) -> list[str]:
    replay_rows = [
        [
            name,
            num(min(r.events, default=0)),
            Spread.of(r.seconds).text(2, bold=True),
            num(REPLAY_EVENTS / r.median),
            Spread.of(r.server_cpu).text(2),
        ]
        for name, r in m.replays.items()
    ]
    storm_rows = [
        [
            name,
            f"{min(s.caught for s in storms):,} / {STORM_CLIENTS:,}",
            f"{min(s.events_min for s in storms):,}..{max(s.events_max for s in storms):,}",
            Spread.of([s.seconds for s in storms]).text(2, bold=True).replace("inf", "not all"),
            Spread.of([s.server_cpu for s in storms]).text(2),
            f"{sum(s.refused for s in storms):,}",
        ]
        for name, storms in m.storms.items()
    ]
    st = m.stalled
    budget = (
        "the pod has no `DELTAGATE_MAX_QUEUED_BYTES` yet: reported as is"
        if st.budget is None
        else f"budget {st.budget / 2**20:.0f} MiB + {STALL_MARGIN / 2**20:.0f} MiB margin: "
        f"**{verdict(st.stalled_rss - st.base_rss <= st.budget + STALL_MARGIN)}**"
    )
    return [
        f"### Replay of {REPLAY_EVENTS:,} events to one client",
        "Appended in batches of 1,000 first; one client subscribes from `earliest`: seconds "
        "from `subscribe` to `caughtUp`. The queued reference replays from memory.",
        table(["server", "events", "seconds", "events/s (median)", "server CPU s"], replay_rows),
        f"### Reconnect storm: {STORM_CLIENTS:,} clients resuming {STORM_EVENTS:,} events each",
        f"{STORM_CLIENTS:,} clients subscribe from `latest` and leave; {STORM_EVENTS:,} events "
        "are appended; all reconnect at once and resume from the head they saw. Seconds from the "
        "first connect to the last `caughtUp`; each must get exactly the events it missed. A "
        "refused connection retries with a jittered backoff (0.1 s doubling to 2 s).",
        table(
            [
                "server",
                "caught up (worst)",
                "events each",
                "seconds until all caught up",
                "server CPU s",
                "refused (retried)",
            ],
            storm_rows,
        ),
        f"### {st.readers} stalled readers (deltagate)",
        f"{st.readers} connections subscribe from `earliest` to the replay store "
        f"({REPLAY_EVENTS:,} events) and never read; the pod's RSS until flat for 3 s "
        f"({st.seconds:.0f} s), and 3 s after they closed: {st.base_rss / 2**20:.0f} MiB before, "
        f"**{st.stalled_rss / 2**20:.0f} MiB** with them "
        f"(+{(st.stalled_rss - st.base_rss) / 2**20:.0f} MiB), {st.closed_rss / 2**20:.0f} MiB "
        f"after ({budget}).",
    ]


# -- goals ----------------------------------------------------------------------------------


def goals(m: Measured) -> list[str]:
    """Issue 19's goals that this section measures, against this run's peers."""
    lines = []
    if DELTAGATE not in m.names:
        return ["- deltagate was not measured"]
    for rate in HEADLINE_RATES:
        mine = m.rates.spread(DELTAGATE, rate, us)
        for peer in (SOCKETIO, NODE_WS):
            if peer not in m.names:
                continue
            theirs = m.rates.spread(peer, rate, us)
            what = "goal" if peer == SOCKETIO else "moonshot"
            lines.append(
                f"- **{verdict(mine.median <= theirs.median)}** ({what}) CPU per delivery at "
                f"{SUBSCRIBERS:,} x {rate}/s at most {peer}'s: {mine.median:.1f} vs "
                f"{theirs.median:.1f} us ({ratio(mine, theirs)})"
            )
    high = max(HEADLINE_RATES)
    at = m.rates.get(DELTAGATE, high)
    held = sum(s.ok and s.missing == 0 for s in at)
    p = m.rates.spread(DELTAGATE, high, p99)
    lines.append(
        f"- **{verdict(bool(at) and held == len(at))}** one pod sustains {SUBSCRIBERS:,} x "
        f"{high}/s with nothing lost and p99 < {GOALS['p99'] * 1e3:.0f} ms: {held} of "
        f"{len(at)} repetitions, p99 {p.text(1, 1e3)} ms"
    )
    if BARE in m.names:
        mine_kib = idle_spread(m, DELTAGATE, m.idle_counts[-1])
        bare_kib = idle_spread(m, BARE, m.idle_counts[-1])
        lines.append(
            f"- **{verdict(mine_kib.median <= bare_kib.median)}** KiB per idle connection at "
            f"{m.idle_counts[-1]:,} at most the bare Starlette ceiling's: {mine_kib.median:.1f} vs "
            f"{bare_kib.median:.1f} ({ratio(mine_kib, bare_kib)})"
            + (
                f"; moonshot socket.io's {idle_spread(m, SOCKETIO, m.idle_counts[-1]).median:.1f}"
                if SOCKETIO in m.names
                else ""
            )
        )
    replay = m.replays.get(DELTAGATE)
    if replay is not None:
        ok = replay.median < GOALS["replay_s"] and min(replay.events) == REPLAY_EVENTS
        lines.append(
            f"- **{verdict(ok)}** replay of {REPLAY_EVENTS:,} events under "
            f"{GOALS['replay_s']:g} s: {replay.median:.2f} s"
        )
    storms = m.storms.get(DELTAGATE, [])
    if storms:
        seconds = Spread.of([s.seconds for s in storms])
        ok = all(s.complete for s in storms) and seconds.median < GOALS["storm_s"]
        lines.append(
            f"- **{verdict(ok)}** reconnect storm under {GOALS['storm_s']:g} s with every "
            f"event: {seconds.text(2)} s"
        )
    return lines
