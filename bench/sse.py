"""Server-Sent Events beside WebSockets: one deltagate pod (auth on, real Redis), the same
subscribers and the same appends over each transport, in the same run. And, on the WebSocket, what
a subscription's filter costs per delivery: every event (``*``), a type filter (``a.*``), and the
same type filter with a content filter (``match`` on the event's data, which every event passes)
(issue 14: a content-filtered subscription costs no more per delivery than a type filter).

Run by ``bench/run.py`` (alone: ``.venv/bin/python bench/run.py --only sse [--quick]``).

Figures per transport: the pod's CPU per delivered event (user + system CPU of the pod process
over the burst, divided by subscribers x events), and the pod's RSS per idle connection. The
subscribers run in this process and only count (a WebSocket client counting messages, a raw
HTTP/1.1 client counting ``event: event`` lines), so they stay ahead of the pod; the appends are
paced batches. Indicative: CPU per operation is the steady figure on a shared host; the full
picture of WebSocket fan-out (p99, peers, stalled readers) is bench/fanout.py's.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import websockets
from _common import (
    POD_ENV,
    ApiKeys,
    Context,
    api_keys,
    deltagate,
    launch,
    process_cpu,
    progress,
    raise_nofile,
    table,
)

BATCH = 10
PAD = "x" * 200
SUBSCRIBE = {
    "websocket": {"eventFilter": "*"},
    "websocket, type filter": {"eventFilter": "a.*"},
    "websocket, type + content filter": {
        "eventFilter": "a.*",
        "match": {"data": {"kind": "order", "region": "eu"}},
    },
}
"""The subscribe message of each WebSocket variant (the events match all three)."""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class SseCounter:
    """A raw SSE subscriber: one GET, then counts ``event: event`` messages (no parsing)."""

    def __init__(self, port: int, store: str, key: str) -> None:
        self.port, self.store, self.key = port, store, key
        self.count = 0
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            f"GET /event-stores/{self.store}/events/sse HTTP/1.1\r\nHost: b\r\n"
            f"X-API-Key: {self.key}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode()[:200])
        first = await reader.readuntil(b"event: subscribed\n")  # the stream is registered
        self.count += first.count(b"\nevent: event\n")
        self.task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        tail = b""
        while data := await reader.read(1 << 16):
            chunk = tail + data
            self.count += chunk.count(b"\nevent: event\n")
            tail = chunk[-16:]
            self.count -= tail.count(b"\nevent: event\n")  # counted again with the next read

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


class WsCounter:
    def __init__(self, url: str, store: str, key: str, subscribe: dict[str, object]) -> None:
        self.url, self.store, self.key = url, store, key
        self.subscribe = json.dumps({"action": "subscribe", **subscribe})
        self.count = 0
        self.ws: websockets.ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.ws = await websockets.connect(
            f"{self.url}/event-stores/{self.store}/events/ws",
            additional_headers={"X-API-Key": self.key},
            max_size=None,
            compression=None,
        )
        await self.ws.send(self.subscribe)
        reply = await self.ws.recv()
        if '"subscribed"' not in str(reply):
            raise RuntimeError(f"subscribe refused: {reply!r}")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            if '"type":"event"' in raw:
                self.count += 1

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.ws is not None:
            await self.ws.close()


async def burst(
    transport: str, pod_url: str, pod_pid: int, keys: ApiKeys, n: int, events: int
) -> tuple[float, float]:
    """Open ``n`` subscribers, append ``events``: (pod CPU µs per delivery, RSS KiB per idle
    connection)."""
    store = f"bench-sse-{time.monotonic_ns()}"
    port = int(pod_url.rsplit(":", 1)[1])
    async with httpx.AsyncClient(timeout=30, headers=keys.write_headers) as http:
        r = await http.post(
            f"{pod_url}/event-stores/{store}/streams/warm", json={"events": [{"type": "w"}]}
        )
        r.raise_for_status()
        before_rss = rss_kib(pod_pid)
        clients: list[SseCounter | WsCounter] = [
            SseCounter(port, store, keys.read)
            if transport == "sse"
            else WsCounter(
                "ws" + pod_url.removeprefix("http"), store, keys.read, SUBSCRIBE[transport]
            )
            for _ in range(n)
        ]
        for start in range(0, n, 100):
            await asyncio.gather(*(c.open() for c in clients[start : start + 100]))
        await asyncio.sleep(1.0)
        per_conn = (rss_kib(pod_pid) - before_rss) / n
        cpu = process_cpu(pod_pid)
        data = {"pad": PAD, "kind": "order", "region": "eu", "total": 5}
        body = {"events": [{"type": "a.b", "data": data}] * BATCH}
        for _ in range(events // BATCH):
            (
                await http.post(f"{pod_url}/event-stores/{store}/streams/s", json=body)
            ).raise_for_status()
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 120
        while sum(c.count for c in clients) < n * events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{transport}: deliveries did not complete")
            await asyncio.sleep(0.05)
        used = process_cpu(pod_pid) - cpu
        for c in clients:
            await c.close()
    return 1e6 * used / (n * events), per_conn


async def main(ctx: Context) -> str:
    raise_nofile()
    n, events, repeats = (200, 200, 2) if ctx.quick else (1000, 500, 3)
    keys = await api_keys(ctx)
    pod = await launch(deltagate(ctx, "serve", POD_ENV))
    rows = []
    try:
        figures: dict[str, list[tuple[float, float]]] = {t: [] for t in (*SUBSCRIBE, "sse")}
        for _ in range(repeats):
            for transport in figures:  # alternating, on one warm pod
                progress(f"sse: {transport}, {n} subscribers x {events} events")
                figures[transport].append(await burst(transport, pod.url, pod.pid, keys, n, events))
                await asyncio.sleep(1.0)
        for transport, runs in figures.items():
            cpu = sorted(r[0] for r in runs)
            rss = sorted(r[1] for r in runs)
            rows.append(
                [
                    transport,
                    f"{cpu[len(cpu) // 2]:.1f}",
                    ", ".join(f"{c:.1f}" for c in cpu),
                    f"{rss[len(rss) // 2]:.0f}",
                ]
            )
    finally:
        pod.stop()
    return (
        "## sse\n\n"
        f"One pod (auth on), {n} subscribers, {events} events in batches of {BATCH} "
        f"(~270 B each), {repeats} runs per row alternating; median and every run. SSE and the "
        "first WebSocket row subscribe to `*`; the others to `a.*`, then with "
        '`match: {data: {kind: "order", region: "eu"}}` too (every event matches all of them, so '
        "each row delivers the same).\n\n"
        + table(
            ["transport", "pod CPU µs/delivery", "runs", "pod RSS KiB per idle connection"], rows
        )
    )
