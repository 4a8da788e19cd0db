"""What every benchmark module shares: the run's context, the deltagate processes it starts, CPU
clocks, percentiles, tables.

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``). Importing it puts
the repository root on ``sys.path``, so that ``tests.harness`` (the one way to start Redis and
deltagate processes, shared with the tests) can be imported after it: every bench module imports
``_common`` first (isort puts it, a third-party name to ruff, before the first-party ``tests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # after bench/ itself, which the script's directory put first

from gateway.process import settle_gc  # noqa: E402
from tests.harness import DeltagateProcess, ServerProcess, free_port  # noqa: E402

P = TypeVar("P", bound=ServerProcess)


@contextlib.contextmanager
def collected_as_in_a_pod() -> Iterator[None]:
    """Python's garbage collector set as a pod sets it (``gateway.process.settle_gc``), while
    this process does a pod's work itself (the lifecycle's copy, the broker's appends) to be
    measured alone; the defaults again after."""
    saved = gc.get_threshold()
    settle_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POD_ENV = {
    "DELTAGATE_AUTH": "enabled",
    "DELTAGATE_AUTO_CREATE_STORES": "true",
    "DELTAGATE_DRAIN_SECONDS": "0",
    "DELTAGATE_RATE_APPENDS_PER_SECOND": "0",
    "DELTAGATE_RATE_SUBSCRIBES_PER_SECOND": "0",
    "DELTAGATE_MAX_CONNECTIONS_PER_KEY": "0",
}
"""A pod as deployed: auth on (every request and WebSocket carries an API key, ``ApiKeys``), on
real Redis. Stores are created on first append and a stopped pod does not drain. The per-key
limits are lifted (0: unlimited) because one key opens all of a run's thousands of connections
and appends; they are checked at connect, subscribe and append, never per delivery."""


@dataclass(frozen=True)
class Context:
    """Handed to every module's ``main(ctx)``."""

    redis_url: str
    redis_port: int
    quick: bool
    python: str
    """The interpreter running the benchmarks (the project's venv)."""
    logs: Path
    """A folder for the processes' log files, removed at the end of the run."""
    output: Path
    """Where the run writes its markdown (``--output``); figures go beside it."""
    servers: tuple[str, ...] = ()
    """``--servers``: only these servers, in the modules that compare several (fanout)."""
    rates: tuple[int, ...] = ()
    """``--rates``: the fan-out module runs only its 1,000-subscriber steps, at these rates."""

    @property
    def warmup(self) -> float:
        """Seconds of load before a measured phase starts."""
        return 0.5 if self.quick else 1.0

    @property
    def duration(self) -> float:
        """Seconds a measured phase lasts."""
        return 1.5 if self.quick else 3.0

    @property
    def repeats(self) -> int:
        """Times each phase runs; a module reports the median run. The host is shared, so one
        run alone can be off by a factor of two."""
        return 1 if self.quick else 3

    @property
    def runs(self) -> str:
        """What a reported figure is, in words: "the median of 3 runs" or "one run"."""
        return f"the median of {self.repeats} runs" if self.repeats > 1 else "one run"


T = TypeVar("T")


async def median_run(
    repeats: int, run: Callable[[], Awaitable[T]], rate: Callable[[T], float]
) -> tuple[T, list[float]]:
    """Run ``run`` ``repeats`` times, one after the other: the run with the median ``rate``, and
    every run's rate in ascending order."""
    runs = sorted([await run() for _ in range(repeats)], key=rate)
    return runs[len(runs) // 2], [rate(r) for r in runs]


@dataclass(frozen=True)
class ApiKeys:
    """The two keys a run's deltagate processes are used with, made by ``api_keys``."""

    read: str
    """read:events + connect:websockets: what a subscriber has."""
    write: str
    """write:events: what an appender has."""

    @property
    def read_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.read}

    @property
    def write_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.write}


async def api_keys(ctx: Context) -> ApiKeys:
    """A read key and a write key in the run's Redis, made the way an operator makes them:
    ``deltagate keys create ... --json``. Make them after the run flushed Redis for the module."""

    async def create(name: str, permissions: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            ctx.python,
            "-m",
            "gateway.cli",
            "keys",
            "create",
            "--name",
            name,
            "--permissions",
            permissions,
            "--json",
            cwd=ROOT,
            env={**os.environ, "DELTAGATE_REDIS_URL": ctx.redis_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"deltagate keys create failed: {err.decode()[-500:]}")
        return str(json.loads(out)["key"])

    read = await create("bench-read", "read:events,connect:websockets")
    return ApiKeys(read, await create("bench-write", "write:events"))


def deltagate(ctx: Context, command: str, env: dict[str, str] | None = None) -> DeltagateProcess:
    """``deltagate <command>`` on the run's Redis, logging warnings only, with ``env``; not
    started yet. A dispatcher serves its status on ``DELTAGATE_DISPATCHER_PORT``, never the
    gateway's port (as ``tests/webhooks/support.py`` starts one)."""
    port = free_port()
    process = DeltagateProcess(
        {"DELTAGATE_REDIS_URL": ctx.redis_url, "DELTAGATE_LOG_LEVEL": "warning", **(env or {})},
        port,
        command=command,
        log_path=ctx.logs / f"{command}-{port}.log",
    )
    if command == "dispatcher":
        process.env["DELTAGATE_DISPATCHER_PORT"] = process.env.pop("DELTAGATE_PORT")
    return process


async def launch(process: P, ready_seconds: float = 20.0) -> P:
    """``process`` started and ready (``/readyz`` 200) within ``ready_seconds``. The readiness poll
    blocks, so it runs in a thread: the event loop stays free for whatever else it serves."""
    process.start(wait_ready=False)
    return await asyncio.to_thread(process.wait_ready, ready_seconds)


def progress(text: str) -> None:
    """One indented line of progress on stderr, at once."""
    print(f"  {text}", file=sys.stderr, flush=True)


def raise_nofile(wanted: int = 0) -> int:
    """Lift this process's open-file limit (children inherit it): to ``wanted`` if the process
    may raise its hard limit that far (CAP_SYS_RESOURCE), else to the hard limit. The limit now
    in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass  # not allowed: a container without CAP_SYS_RESOURCE
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def process_cpu(pid: int) -> float:
    """User + system CPU seconds another process (on this host) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def redis_cpu(client: Any) -> float:
    """User + system CPU seconds the Redis server has used so far."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of an already sorted sequence; nearest rank."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one figure: their median and range."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(tuple(sorted(values)))

    @property
    def median(self) -> float:
        v = self.values
        if not v:
            return float("nan")
        mid = len(v) // 2
        return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2

    def text(self, digits: int = 1, scale: float = 1.0, bold: bool = False) -> str:
        """``median (min..max)``, each times ``scale``; the median in bold if asked."""
        if not self.values:
            return "-"
        middle = num(self.median * scale, digits)
        if bold:
            middle = f"**{middle}**"
        if len(self.values) == 1:
            return middle
        low, high = num(self.values[0] * scale, digits), num(self.values[-1] * scale, digits)
        return f"{middle} ({low}..{high})"


@dataclass
class Window:
    """What a closed-loop load run measured: completed requests and their latencies."""

    requests: int
    seconds: float
    latencies: list[float]
    """Seconds, sorted."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


async def closed_loop(
    workers: Sequence[Callable[[int], Awaitable[None]]],
    *,
    warmup: float,
    duration: float,
    on_start: Callable[[], Awaitable[None]] | None = None,
) -> Window:
    """Run each worker (one per concurrent client) back to back, ``warmup`` seconds unmeasured,
    then ``duration`` seconds measured. Only requests that start and end inside the measured
    window count. ``on_start`` runs when measuring starts (e.g. to snapshot CPU clocks)."""
    import asyncio

    state = {"measuring": False, "stop": False, "end": float("inf")}
    latencies: list[float] = []

    async def loop(work: Callable[[int], Awaitable[None]]) -> None:
        i = 0
        while not state["stop"]:
            measured = state["measuring"]
            started = time.perf_counter()
            await work(i)
            finished = time.perf_counter()
            if measured and finished <= state["end"]:
                latencies.append(finished - started)
            i += 1

    tasks = [asyncio.create_task(loop(w)) for w in workers]
    try:
        await asyncio.sleep(warmup)
        if on_start is not None:
            await on_start()
        begin = time.perf_counter()
        state["measuring"] = True
        state["end"] = begin + duration
        await asyncio.sleep(duration)
        state["stop"] = True
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
    latencies.sort()
    return Window(len(latencies), duration, latencies)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def num(value: float, digits: int = 0) -> str:
    """A figure for a table: thousands separated, ``digits`` decimals."""
    return f"{value:,.{digits}f}"


class KeepAliveHttp:
    """One keep-alive HTTP/1.1 connection sending pre-encoded POSTs (appends), one at a time.

    Deliberately minimal (no parsing beyond the status line and Content-Length) so the load
    generator costs a small fraction of what the gateway spends per request."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: bytes = b""
    ) -> None:
        self.reader, self.writer = reader, writer
        self.headers = headers

    @classmethod
    async def open(cls, port: int, headers: dict[str, str] | None = None) -> KeepAliveHttp:
        """A connection to 127.0.0.1:``port`` whose requests carry ``headers`` (an API key)."""
        lines = b"".join(f"{k}: {v}\r\n".encode() for k, v in (headers or {}).items())
        return cls(*await asyncio.open_connection("127.0.0.1", port), lines)

    async def post(self, path: bytes, body: bytes) -> None:
        """POST ``body``; anything but 201 Created raises."""
        self.writer.write(
            b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"%scontent-length: %d\r\n\r\n%s" % (path, self.headers, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"content-length:")
        length = int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0
        reply = await self.reader.readexactly(length)
        if head[9:12] != b"201":
            raise RuntimeError(f"append failed: {head[:12]!r} {reply[:500]!r}")

    def close(self) -> None:
        self.writer.close()
