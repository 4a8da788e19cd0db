"""The ceiling of a webhook delivery: a bare keep-alive POST loop, in a process of its own.

    python bench/_post_loop.py PORT CLIENT REQUESTS CONCURRENCY BODY_BYTES [RATE]

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``); run by
``bench/webhooks.py`` against the same receiver as the dispatcher. ``CONCURRENCY`` tasks, each
with one keep-alive HTTP/1.1 connection, POST a pre-built body of ``BODY_BYTES`` (a delivery's
size) with a delivery's headers (content-type, webhook-id, -timestamp, -signature; nothing is
signed here) until ``REQUESTS`` are answered, then print one JSON line: requests, seconds and
this process's CPU seconds over them (the connections are opened before the clocks start).
With ``RATE``, requests start no faster than ``RATE`` per second (request k at k / RATE seconds
after the start, or as soon after as a connection is free): the loop's CPU per request at the
rate another sender (the dispatcher) reached, rather than flat out.

``CLIENT`` is the HTTP client: ``deltagate`` (the dispatcher's own, ``broker/webhooks/client.py``,
used as ``delivery.Target`` uses it), ``raw`` (asyncio streams, parsing just the status line and
Content-Length: the floor of a POST from Python), ``httpcore`` (the connection pool under httpx)
or ``aiohttp`` (the dispatcher's client before, configured as it was there).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

import uvloop

from gateway.process import settle_gc

HEADERS = {
    "content-type": "application/json",
    "webhook-id": "5b8e6f0e-3c1a-4c53-9d55-3f2a1e7c9b10",
    "webhook-timestamp": "1767225600",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
}

Post = Callable[[], Awaitable[None]]


def request_of(port: int, body: bytes) -> bytes:
    """A whole POST with a delivery's headers, as the raw and deltagate loops send it."""
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    request = (
        f"POST /ceiling HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{head}"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return request.encode() + body


async def raw(port: int, body: bytes) -> tuple[Post, Callable[[], Awaitable[None]]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = request_of(port, body)

    async def post() -> None:
        writer.write(request)
        reply = await reader.readuntil(b"\r\n\r\n")
        if reply[9:10] != b"2":
            raise RuntimeError(f"answered {reply[:40]!r}")
        at = reply.lower().find(b"content-length:")
        length = int(reply[at + 15 : reply.index(b"\r\n", at)]) if at >= 0 else 0
        if length:
            await reader.readexactly(length)

    async def close() -> None:
        writer.close()

    return post, close


async def with_httpcore(port: int, body: bytes) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import httpcore

    pool = httpcore.AsyncConnectionPool(max_connections=1, max_keepalive_connections=1)
    url = f"http://127.0.0.1:{port}/ceiling"
    headers = list(HEADERS.items())

    async def post() -> None:
        response = await pool.request("POST", url, headers=headers, content=body)
        if not 200 <= response.status < 300:
            raise RuntimeError(f"answered {response.status}")

    await post()  # opens the connection before the clocks start
    return post, pool.aclose


async def with_aiohttp(port: int, body: bytes) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import aiohttp

    # Configured as the dispatcher's sessions were (delivery.py, before its own client).
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
    url = f"http://127.0.0.1:{port}/ceiling"
    timeout = aiohttp.ClientTimeout(total=10)

    async def post() -> None:
        async with session.post(
            url, data=body, headers=HEADERS, allow_redirects=False, timeout=timeout
        ) as response:
            await response.read()
            if not 200 <= response.status < 300:
                raise RuntimeError(f"answered {response.status}")

    await post()
    return post, session.close


async def ours(port: int, body: bytes) -> tuple[Post, Callable[[], Awaitable[None]]]:
    from broker.webhooks.client import Origin

    async def resolve(host: str, port: int) -> list[str]:
        return [host]

    # As the dispatcher's Target uses it: one origin, the request's head built once per target.
    origin = Origin("127.0.0.1", port, tls=None, resolve=resolve, limit=1, idle_seconds=15)
    request = request_of(port, body)

    async def post() -> None:
        status = await origin.request(request, 10)
        if not 200 <= status < 300:
            raise RuntimeError(f"answered {status}")

    async def close() -> None:
        origin.close()

    await post()
    return post, close


CLIENTS = {"deltagate": ours, "raw": raw, "httpcore": with_httpcore, "aiohttp": with_aiohttp}


async def main(
    port: int, client: str, requests: int, concurrency: int, size: int, rate: float
) -> None:
    body = b'{"event":"' + b"x" * max(0, size - 12) + b'"}'
    conns = [await CLIENTS[client](port, body) for _ in range(concurrency)]
    left = [requests]

    async def loop(post: Post) -> None:
        while left[0] > 0:
            left[0] -= 1
            if rate:
                pause = started + (requests - left[0] - 1) / rate - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
            await post()

    cpu, started = time.process_time(), time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(loop(post) for post, _ in conns)), 300)
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    for _, close in conns:
        await close()
    print(json.dumps({"requests": requests, "seconds": seconds, "cpu": cpu}))


if __name__ == "__main__":
    port, client, requests, concurrency, size = sys.argv[1:6]
    rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    settle_gc()  # as the dispatcher it is compared with sets it
    uvloop.run(main(int(port), client, int(requests), int(concurrency), int(size), rate))
