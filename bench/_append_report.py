"""The append benchmark's rows and its section of bench/RESULTS.md: throughput, CPU per event,
the goal against raw XADD and the ratios to the same-run ceiling of an HTTP append. Pure
formatting: ``bench/append.py`` measures.

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from _common import Context, Spread, num, table, verdict

STREAMS = 1000
CONCURRENCY = 16
BATCHES = (1, 100)
XADD_CLIENTS = 50
TARGET = 3.0
"""The goal: raw pipelined XADD/s of an event at most this many times the broker's events/s
(batches of 100). The raw XADD writes what the log stores per event (the same three fields, an
event's JSON of the same size); ``f v`` is shown beside it as the floor of Redis' per-command
cost, which no store of real events reaches."""


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
        "uvicorn settings that parses the body with orjson and hands the events to "
        "`EventLog.append`, so it runs the same `EVALSHA` of `append.lua` with the same keys "
        "and arguments, and answers the same JSON; no validation, auth, metrics or response "
        "model. It ran alternately with the pod (auth on, write key), the same load; its "
        "appends are read back through the broker afterwards. CPU per request of the server "
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
