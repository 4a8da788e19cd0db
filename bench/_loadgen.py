"""The fan-out benchmark's load generator: one process, driven by ``bench/fanout.py`` (and by
``bench/sse.py``, ``bench/scale.py``, ``bench/pods.py``, ``bench/archive.py``).

    python bench/_loadgen.py     (reads one JSON command per line on stdin, answers one per line)

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``). The controller
starts several of these so that the clients never share a core's worth of Python with the
server they measure. WebSocket clients are ``picows`` (Cython, on uvloop): receiving a frame
costs about a microsecond of Python here, so a worker keeps up with well over 100k frames/s.

Subscribers (``bench/_wsclients.py``: deltagate's WebSocket protocol, Socket.IO, or deltagate's
Server-Sent Events over raw keep-alive HTTP/1.1, the ``proto`` of ``connect``) keep counters per
group of connections: frames received inside a receive-time window, and a latency histogram of
the events whose ``data.sentAt`` lies inside a send-time window (latency = receive time - sentAt,
both ``time.time()`` on this host).
The appender sends each event as a batch of one, open-loop at a target rate over a few
keep-alive HTTP/1.1 connections, stamping ``sentAt`` when it writes the request.

Every wait is bounded by a timeout; every loop by a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvloop
from _common import KeepAliveHttp, raise_nofile
from _wsclients import PROTOCOLS, Group, Subscriber, sse_request, subscribe_message
from picows import ws_connect

STREAMS = 100


def event_json(sent: float, n: int) -> bytes:
    """One event of an append body, shaped like an order (~360 bytes once stored)."""
    return (
        b'{"type":"order.placed","data":{"sentAt":%s,"orderId":"ord-%010d",'
        b'"customerId":"cust-%06d","totalAmount":%d.%02d,"currency":"EUR","items":%d}}'
        % (repr(sent).encode(), n, n % 1_000_000, 5 + n % 495, n % 100, 1 + n % 8)
    )


def stream_path(store: str, n: int) -> bytes:
    return f"/event-stores/{store}/streams/order-{n % STREAMS}".encode()


def why(exc: BaseException) -> str:
    """An exception in one line: its type, message and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"[:300]


class Worker:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def group(self, name: str) -> Group:
        if name not in self.groups:
            self.groups[name] = Group()
        return self.groups[name]

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.pop("cmd")
        method = getattr(self, f"cmd_{cmd}", None)
        if method is None:
            raise ValueError(f"unknown command {cmd!r}")
        return await method(**req)  # type: ignore[no-any-return]

    # -- subscribers --------------------------------------------------------------------------

    async def cmd_connect(
        self,
        group: str,
        url: str,
        count: int,
        position: Any = "latest",
        concurrency: int = 100,
        timeout: float = 60.0,
        wait_caught: bool = False,
        proto: str = "deltagate",
        headers: dict[str, str] | None = None,
        filters: list[Any] | None = None,
        sources: list[str] | None = None,
        stall: bool = False,
    ) -> dict[str, Any]:
        """Open ``count`` connections speaking ``proto`` (with ``headers``: an API key), each
        subscribing from ``position`` to the next of ``filters`` in turn (default ``*``), from
        the next of the loopback ``sources`` addresses in turn (each has its own ephemeral
        ports); wait for every ``subscribed`` (and, with ``wait_caught``, every ``caughtUp``).
        With ``stall`` a connection stops reading once it has sent ``subscribe``.

        Like a real client, a connection the server refuses or closes (e.g. 1013, overloaded) or
        whose ``subscribe`` is answered with an error tries again after a jittered backoff (0.1 s,
        doubling up to 2 s) until ``timeout``; the refusals are counted."""
        g = self.group(group)
        if wait_caught:
            g.caught = 0
            g.expect_caught = count
            g.all_caught.clear()
        started = time.time()
        deadline = time.monotonic() + timeout
        kind = PROTOCOLS[proto]
        messages = [subscribe_message(proto, f, position) for f in filters or ["*"]]
        if proto == "sse":
            messages = [sse_request(url, query, headers) for query in messages]
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []
        refused = [0]
        loop = asyncio.get_running_loop()

        async def attempt(index: int) -> Subscriber:
            client: Subscriber | None = None

            def factory() -> Subscriber:
                nonlocal client
                client = kind(g, messages[index % len(messages)], stall)
                return client

            options: dict[str, Any] = {}
            if sources:
                options["local_addr"] = (sources[index % len(sources)], 0)

            async def subscribed() -> Subscriber:
                if proto == "sse":
                    at = urlsplit(url)
                    await loop.create_connection(factory, at.hostname, at.port, **options)
                else:
                    await ws_connect(
                        factory, url, websocket_handshake_timeout=timeout, extra_headers=headers,
                        **options,
                    )  # fmt: skip
                if (
                    client is None
                ):  # picows returns no listener when the server hung up mid-handshake
                    raise ConnectionError("closed by the server during the handshake")
                await client.subscribed
                return client

            try:
                return await asyncio.wait_for(subscribed(), max(0.1, deadline - time.monotonic()))
            except BaseException:
                if client is not None:
                    client.abort()
                raise

        async def one(index: int) -> Subscriber | None:
            backoff = 0.1
            for _ in range(100):  # bounded; the deadline ends it sooner
                try:
                    async with gate:
                        return await attempt(index)
                except Exception as exc:
                    refused[0] += 1
                    if len(failures) < 5:
                        failures.append(why(exc))
                if time.monotonic() + backoff >= deadline:
                    break
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(2.0, backoff * 2)
            return None

        clients = [c for c in await asyncio.gather(*(one(i) for i in range(count))) if c]
        connected = time.time()
        g.clients.extend(clients)
        result: dict[str, Any] = {
            "connected": len(clients),
            "failed": count - len(clients),
            "errors": failures,
            "refused": refused[0],
            "started": started,
            "seconds": connected - started,
            "positions": sorted({c.position for c in clients if c.position is not None}),
        }
        if wait_caught:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(g.all_caught.wait(), max(0.1, deadline - time.monotonic()))
            caught = [c for c in clients if c.caught_at]
            result |= {
                "caught": len(caught),
                "first_sub_sent": min((c.sub_sent for c in clients), default=0.0),
                "last_caught": max((c.caught_at for c in caught), default=0.0),
                "events_min": min((c.events_at_caught for c in caught), default=0),
                "events_max": max((c.events_at_caught for c in caught), default=0),
                "server_errors": g.errors,
            }
        return result

    async def cmd_window(
        self, group: str, s0: float, s1: float, t0: float, t1: float
    ) -> dict[str, Any]:
        g = self.group(group)
        g.reset()
        g.s0, g.s1, g.t0, g.t1 = s0, s1, t0, t1
        return {}

    async def cmd_wait(self, group: str, measured: int, timeout: float) -> dict[str, Any]:
        """Wait until ``measured`` events of the send window have arrived (bounded)."""
        g = self.group(group)
        deadline = time.monotonic() + timeout
        # Polled: an Event set per received frame would cost the hot path more.
        while g.measured < measured and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return {"measured": g.measured}

    async def cmd_stats(self, group: str) -> dict[str, Any]:
        g = self.group(group)
        return {
            "events": g.events,
            "in_window": g.in_window,
            "measured": g.measured,
            "slowest": g.slowest,
            "hist": [(i, n) for i, n in enumerate(g.hist) if n],
            "clients": len(g.clients),
            "open": sum(1 for c in g.clients if c.is_open),
            "other": g.other,
            "errors": g.errors,
        }

    async def cmd_close(self, group: str, timeout: float = 10.0) -> dict[str, Any]:
        g = self.groups.pop(group, None)
        if g is None:
            return {"closed": 0}
        for c in g.clients:
            c.close()

        async def gone(c: Subscriber) -> None:
            with contextlib.suppress(Exception):
                await c.wait_closed()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(gone(c) for c in g.clients)), timeout)
        return {"closed": len(g.clients)}

    # -- appender -----------------------------------------------------------------------------

    async def cmd_append(
        self,
        port: int,
        store: str,
        rate: float,
        start: float,
        warmup: float,
        duration: float,
        conns: int = 16,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Append one event per request at ``rate``/s from ``start`` (wall clock) for
        ``warmup + duration`` seconds, open-loop (a slow server makes requests wait for a free
        connection: the appender then falls behind, which the result shows)."""
        pool = [await KeepAliveHttp.open(port, headers) for _ in range(conns)]
        idle: deque[KeepAliveHttp] = deque(pool)
        freed = asyncio.Event()
        s0, s1 = start + warmup, start + warmup + duration
        total = int(rate * (warmup + duration))
        stats = {"sent": 0, "ok": 0, "in_window": 0, "errors": 0, "late": 0}
        latencies: list[float] = []
        error: list[str] = []
        tasks: set[asyncio.Task[None]] = set()

        async def send(conn: KeepAliveHttp, n: int) -> None:
            sent = time.time()
            try:
                await conn.post(stream_path(store, n), b'{"events":[%s]}' % event_json(sent, n))
            except Exception as exc:
                stats["errors"] += 1
                if not error:
                    error.append(repr(exc)[:300])
                return
            finally:
                idle.append(conn)
                freed.set()
            stats["ok"] += 1
            if s0 <= sent < s1:
                stats["in_window"] += 1
                latencies.append(time.time() - sent)

        try:
            for n in range(total):
                due = start + n / rate
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.01:
                    stats["late"] += 1
                while not idle and time.time() < s1 + 1.0:
                    freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(freed.wait(), 0.5)
                if not idle or time.time() >= s1:
                    break
                stats["sent"] += 1
                task = asyncio.get_running_loop().create_task(send(idle.popleft(), n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=10.0)
        finally:
            for conn in pool:
                conn.close()
        latencies.sort()

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0

        return stats | {
            "rate": stats["in_window"] / duration,
            "append_p50": pct(0.5),
            "append_p99": pct(0.99),
            "first_error": error[0] if error else None,
        }

    async def cmd_bulk(
        self,
        port: int,
        store: str,
        total: int,
        batch: int,
        conns: int = 4,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Append ``total`` events in batches of ``batch`` as fast as ``conns`` connections go."""
        pool = [await KeepAliveHttp.open(port, headers) for _ in range(conns)]
        batches = deque(range(0, total, batch))
        started = time.time()

        async def run(conn: KeepAliveHttp) -> None:
            while batches:
                first = batches.popleft()
                now = time.time()
                events = b",".join(
                    event_json(now, n) for n in range(first, min(total, first + batch))
                )
                await conn.post(stream_path(store, first // batch), b'{"events":[%s]}' % events)

        try:
            await asyncio.wait_for(asyncio.gather(*(run(c) for c in pool)), 300)
        finally:
            for conn in pool:
                conn.close()
        return {"seconds": time.time() - started, "events": total}

    async def cmd_ping(self) -> dict[str, Any]:
        return {"pid": _pid()}


def _pid() -> int:
    import os

    return os.getpid()


async def main() -> None:
    raise_nofile()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    worker = Worker()
    while True:
        line = await reader.readline()
        if not line:
            break
        request = orjson.loads(line)
        if request.get("cmd") == "exit":
            break
        try:
            result = await worker.handle(request)
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        out.write(orjson.dumps(result) + b"\n")
        out.flush()
    for name in list(worker.groups):
        await worker.cmd_close(name, timeout=5.0)


if __name__ == "__main__":
    uvloop.run(main())
