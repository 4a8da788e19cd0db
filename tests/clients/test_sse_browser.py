"""The browser's own ``EventSource`` (headless Chromium, driven by Playwright) against real pods
behind a retargetable proxy, and behind a real nginx: the pod serving the stream is killed, the
browser reconnects on its own with ``Last-Event-ID`` to the other pod, and nothing is lost or
doubled. And the served JavaScript client with ``transport: 'sse'`` doing the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.clients.conftest import FAST, append_sync
from tests.clients.proxy import Proxy
from tests.clients.test_browser import until
from tests.conftest import CHROMIUM_ARGS
from tests.e2e.test_nginx import nginx_for  # noqa: F401 (a fixture)
from tests.harness import Pod, spawn_pods

pytestmark = pytest.mark.timeout(90)

STORE = "browser-sse"

OPEN = """
(url) => {
  window.got = [];
  window.kinds = [];
  window.errors = 0;
  const source = new EventSource(url);
  source.addEventListener('event', (e) => {
    window.got.push(JSON.parse(e.data).globalPosition);
    window.lastId = e.lastEventId;
  });
  for (const kind of ['subscribed', 'caughtUp', 'checkpoint', 'reset', 'close']) {
    source.addEventListener(kind, () => window.kinds.push(kind));
  }
  source.onerror = () => { window.errors += 1; };
  window.source = source;
}
"""


async def add(url: str, n: int, start: int) -> None:
    for i in range(start, start + n):
        kind = "order.placed" if i % 3 else "audit.noted"
        await asyncio.to_thread(append_sync, url, STORE, f"o-{i}", [{"type": kind, "data": {}}])


@asynccontextmanager
async def opened(chromium: str, base: str) -> AsyncIterator[tuple[Any, list[str]]]:
    """A headless Chromium page on ``base`` (an origin), and the page errors it raised."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            await page.goto(f"{base}/healthz")
            yield page, problems
        finally:
            await browser.close()


async def test_event_source_survives_a_killed_pod(chromium: str, redis_url, pods, proxies) -> None:
    a, b = spawn_pods(pods, redis_url, 2, **FAST)
    proxy = Proxy(a.port).start()
    proxies.append(proxy)
    await add(b.url, 6, 0)  # positions 1..6; order.placed at i % 3 != 0
    want = [i + 1 for i in range(6) if i % 3]
    async with opened(chromium, proxy.url) as (page, problems):
        url = f"/event-stores/{STORE}/events/sse?eventFilter=order.*&position=earliest"
        await page.evaluate(OPEN, url)
        await until(page, f"window.got.length === {len(want)}", 10)
        await until(page, "window.kinds.includes('caughtUp')")
        await add(b.url, 3, 6)
        want += [i + 1 for i in range(6, 9) if i % 3]
        await until(page, f"window.got.length === {len(want)}", 10)
        assert await page.evaluate("window.lastId") == str(want[-1])

        a.kill()  # the browser's connection drops; it reconnects through the proxy to B
        proxy.retarget(b.port)
        await add(b.url, 9, 9)
        want += [i + 1 for i in range(9, 18) if i % 3]
        await until(page, f"window.got.length >= {len(want)}", 20)
        await asyncio.sleep(0.3)  # a doubled event would have arrived by now
        assert await page.evaluate("window.got") == want, "lost or doubled events"
        assert await page.evaluate("window.errors") >= 1  # it did reconnect
        assert await page.evaluate("window.kinds.filter(k => k === 'subscribed').length") == 2
        assert proxy.accepted >= 2
        assert not problems, problems
        await page.evaluate("window.source.close()")


CLIENT = """
async () => {
  const { DeltaBaseWebSocket } = await import('/client/deltagate.js');
  window.seen = [];
  window.states = [];
  window.resets = [];
  const client = new DeltaBaseWebSocket(
    'STORE', null, (event) => window.seen.push(event.globalPosition),
    {
      transport: 'sse', initialDelay: 100, maxDelay: 500,
      onStateChange: (s) => window.states.push(s),
      onReset: (msg) => window.resets.push(msg),
    },
  );
  client.subscribe('order.*', undefined, 'earliest');
  client.connect();
  window.client = client;
}
""".replace("STORE", STORE)


async def test_js_client_over_sse_survives_a_killed_pod(
    chromium: str, redis_url, pods, proxies
) -> None:
    a, b = spawn_pods(pods, redis_url, 2, **FAST)
    proxy = Proxy(a.port).start()
    proxies.append(proxy)
    await add(b.url, 6, 0)
    want = [i + 1 for i in range(6) if i % 3]
    async with opened(chromium, proxy.url) as (page, problems):
        await page.evaluate(CLIENT)
        await until(page, f"window.seen.length === {len(want)}", 10)
        assert await page.evaluate("window.client.state") == "open"
        a.kill()
        proxy.retarget(b.port)
        await add(b.url, 9, 6)
        want += [i + 1 for i in range(6, 15) if i % 3]
        await until(page, f"window.seen.length >= {len(want)}", 20)
        await asyncio.sleep(0.3)
        assert await page.evaluate("window.seen") == want, "lost or doubled events"
        assert "reconnecting" in await page.evaluate("window.states")
        await page.evaluate("window.client.disconnect()")
        assert not problems, problems


async def test_js_client_over_sse_resets_when_the_dev_server_restarts(
    chromium: str, pods, proxies
) -> None:
    """The client's first stream asked for `earliest` (no cursor, so no epoch in its URL). A
    restarted dev server has a new, longer history: had the browser reconnected by itself with
    that URL and Last-Event-ID, the server could not tell the histories apart and the new store's
    first events would be skipped. The client reopens the stream with the epoch: `reset`, then
    the new history from its start."""
    dev = Pod({"DELTAGATE_AUTH": "disabled", **FAST}).start()  # embedded: no Redis URL
    pods.append(dev)
    proxy = Proxy(dev.port).start()
    proxies.append(proxy)
    await add(dev.url, 3, 1)  # order events at positions 1 and 2
    async with opened(chromium, proxy.url) as (page, problems):
        await page.evaluate(CLIENT)
        await until(page, "window.seen.length === 2", 10)
        dev.stop()
        restarted = Pod({"DELTAGATE_AUTH": "disabled", **FAST}, port=dev.port).start()
        pods.append(restarted)
        await add(restarted.url, 6, 1)  # positions 1..6, order events at 1, 2, 4, 5
        await until(page, "window.resets.length === 1", 20)
        await until(page, "window.seen.length >= 6", 10)
        await asyncio.sleep(0.3)
        assert await page.evaluate("window.seen") == [1, 2, 1, 2, 4, 5]
        assert await page.evaluate("window.resets[0].reason") == "store-recreated"
        await page.evaluate("window.client.disconnect()")
        assert not problems, problems


def _sse_connections(pod: Pod) -> float:
    for line in httpx.get(pod.url + "/metrics").text.splitlines():
        if line.startswith("deltagate_sse_connections "):
            return float(line.split()[1])
    return 0.0


async def test_event_source_behind_nginx_survives_a_killed_pod(
    chromium: str,
    redis_url,
    pods,
    nginx_for,  # noqa: F811 (the fixture)
) -> None:
    """The issue's check, literally: a real nginx in front of two pods; the pod holding the
    browser's stream is killed -9; EventSource resumes on the other with nothing lost or doubled."""
    a, b = spawn_pods(pods, redis_url, 2, **FAST)
    lb = nginx_for([a.port, b.port])
    await add(a.url, 6, 0)
    want = [i + 1 for i in range(6) if i % 3]
    async with opened(chromium, f"http://{lb}") as (page, problems):
        url = f"/event-stores/{STORE}/events/sse?eventFilter=order.*&position=earliest"
        await page.evaluate(OPEN, url)
        await until(page, f"window.got.length === {len(want)}", 10)
        serving, other = (a, b) if _sse_connections(a) == 1 else (b, a)
        assert _sse_connections(serving) == 1
        serving.kill()
        await add(other.url, 9, 6)
        want += [i + 1 for i in range(6, 15) if i % 3]
        await until(page, f"window.got.length >= {len(want)}", 20)
        await asyncio.sleep(0.3)
        assert await page.evaluate("window.got") == want, "lost or doubled events"
        assert _sse_connections(other) == 1
        assert not problems, problems
        await page.evaluate("window.source.close()")
