"""Server-Sent Events (contract section 9) through real pods: a raw curl-like client (and curl
itself), exact resume with Last-Event-ID across two pods, filters and positions, every refused
request answered before the stream starts, drain, slow readers, metrics and the per-key limit."""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime

import httpx
import pytest
import websockets

from broker import Filter
from tests.e2e.sseclient import SseClient
from tests.e2e.test_streaming import FAST, STORE, TYPES, append, expected, log_entries
from tests.harness import Pod, sample, spawn_pods

pytestmark = pytest.mark.timeout(90)

ADMIN = "admin-secret-for-sse-tests"
TOKEN_SECRET = "token-secret-for-sse-tests-0123456789abcdef"


def sse(pod: Pod, **params: object) -> SseClient:
    return SseClient(pod.port, STORE, dict(params))


async def fill(pod: Pod, n: int, seed: int = 1, stream: str | None = None) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=10) as http:
        for i in range(n):
            await append(
                http,
                pod,
                stream or f"s-{i % 5}",
                [{"type": rng.choice(TYPES), "data": {"i": i, "even": i % 2 == 0}}],
            )


async def test_stream_format_replay_live_and_heartbeats(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_SSE_HEARTBEAT_SECONDS="0.3", **FAST)
    await fill(pod, 10)
    client = await sse(pod, position="earliest").open()
    assert client.response_headers["content-type"].startswith("text/event-stream")
    assert client.response_headers["cache-control"].startswith("no-cache")
    await client.wait(lambda: client.named("caughtUp"), what="caughtUp")
    (subscribed,) = client.named("subscribed")
    assert subscribed.id == "0"  # where the stream starts after
    assert subscribed.data["position"] == 10 and subscribed.data["eventFilter"] == "*"
    assert subscribed.data["epoch"]
    assert client.messages[0].event == "subscribed" and client.retry == 1000
    assert client.positions == list(range(1, 11))
    for m in client.named("event"):
        assert m.id == str(m.data["globalPosition"])
    caught = client.named("caughtUp")[0]
    assert caught.id == "10" and caught.data == {"globalPosition": 10}
    await fill(pod, 5, seed=2)
    await client.wait(lambda: len(client.positions) == 15, what="live events")
    assert client.positions == list(range(1, 16))
    assert client.last_event_id == "15"
    await client.wait(lambda: "keep-alive" in client.comments, what="a heartbeat comment")
    await client.aclose()


def test_curl_sees_events_and_heartbeats(redis_url, pods):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_SSE_HEARTBEAT_SECONDS="0.3")
    asyncio.run(fill(pod, 3))
    done = subprocess.run(
        [curl, "-sN", "-m", "2", f"{pod.url}/event-stores/{STORE}/events/sse?position=earliest"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 28, done.stderr  # ended by -m: the stream stays open
    assert "id: 3\nevent: event\ndata: {" in done.stdout
    assert "event: caughtUp" in done.stdout
    assert done.stdout.count(": keep-alive\n\n") >= 2


async def test_last_event_id_resumes_exactly_on_another_pod(redis_url, pods):
    a, b = spawn_pods(pods, redis_url, 2, **FAST)
    flt = Filter.parse(["order.*", "user.created"])
    params = {"eventFilter": ["order.*", "user.created"], "position": "earliest"}
    await fill(a, 40)
    first = await SseClient(a.port, STORE, params).open()
    await first.wait(lambda: first.named("caughtUp"), what="caughtUp on pod A")
    await first.aclose()
    seen = first.positions
    assert first.last_event_id is not None
    await fill(b, 40, seed=3)
    # As EventSource does: the same URL, and the last id seen, to another pod.
    second = await SseClient(b.port, STORE, params, last_event_id=first.last_event_id).open()
    entries = log_entries(redis_url)
    want = expected(entries, flt, 0)
    await second.wait(lambda: seen + second.positions == want, what="the rest, exactly")
    await fill(a, 10, seed=4)
    want = expected(log_entries(redis_url), flt, 0)
    await second.wait(lambda: seen + second.positions == want, what="live after resume")
    assert not second.named("reset") and not second.named("truncated")
    await second.aclose()


async def test_filters_positions_and_time(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    await fill(pod, 30)
    await asyncio.sleep(0.05)
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await fill(pod, 10, seed=7)
    entries = log_entries(redis_url)
    cases = [
        ({"eventFilter": "order.*", "position": "earliest"}, Filter.parse("order.*"), 0),
        ({"streamId": "s-3", "position": "0"}, Filter.parse("*", "s-3"), 0),
        ({"eventFilter": "*", "position": "25"}, Filter.parse("*"), 25),
        (
            {"position": {"time": since.isoformat().replace("+00:00", "Z")}},
            Filter.parse("*"),
            30,
        ),
        ({"position": since.isoformat(), "eventFilter": "*"}, Filter.parse("*"), 30),
        (
            {"eventFilter": '["order.*", "user.created"]', "position": "earliest"},
            Filter.parse(["order.*", "user.created"]),
            0,
        ),
    ]
    for params, flt, after in cases:
        client = await SseClient(pod.port, STORE, params).open()
        await client.wait(lambda c=client: c.named("caughtUp"), what=f"caughtUp for {params}")
        assert client.positions == expected(entries, flt, after), params
        await client.aclose()
    # Content filters: match on data, and a DCB query.
    match = await SseClient(
        pod.port, STORE, {"position": "earliest", "match": {"data": {"even": True}}}
    ).open()
    await match.wait(lambda: match.named("caughtUp"), what="caughtUp (match)")
    assert match.events and all(e["data"]["even"] for e in match.events)
    assert len(match.events) == 20
    query = await SseClient(
        pod.port,
        STORE,
        {"position": "earliest", "query": {"items": [{"types": ["user.created"]}]}},
    ).open()
    await query.wait(lambda: query.named("caughtUp"), what="caughtUp (query)")
    assert query.positions == expected(entries, Filter.parse("user.created"), 0)
    # latest: nothing old, the next event; subscribed's id is the head.
    latest = await sse(pod).open()
    await latest.wait(lambda: latest.named("subscribed"), what="subscribed")
    assert latest.named("subscribed")[0].id == "40"
    await fill(pod, 1, seed=9)
    await latest.wait(lambda: latest.positions == [41], what="the next event")
    for client in (match, query, latest):
        await client.aclose()


async def test_a_cursor_past_the_head_is_reset(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    await fill(pod, 3)
    client = await SseClient(pod.port, STORE, {}, last_event_id="99").open()
    await client.wait(lambda: client.named("caughtUp"), what="caughtUp after reset")
    (reset,) = client.named("reset")
    assert reset.id == "0" and reset.data["reason"] == "position-ahead"
    assert reset.data["headPosition"] == 3
    assert client.positions == [1, 2, 3]
    await client.aclose()
    # A cursor from another epoch (a store deleted and created again): reset, then all of it.
    epoch = client.named("subscribed")[0].data["epoch"]
    other = await SseClient(pod.port, STORE, {"epoch": "not-" + epoch}, last_event_id="2").open()
    await other.wait(lambda: other.named("caughtUp"), what="caughtUp after an epoch reset")
    (reset,) = other.named("reset")
    assert reset.data["reason"] == "store-recreated" and reset.data["epoch"] == epoch
    assert other.positions == [1, 2, 3]
    await other.aclose()
    same = await SseClient(pod.port, STORE, {"epoch": epoch}, last_event_id="2").open()
    await same.wait(lambda: same.named("caughtUp"), what="caughtUp with the right epoch")
    assert not same.named("reset") and same.positions == [3]
    await same.aclose()


async def test_bad_requests_are_answered_before_the_stream(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_AUTO_CREATE_STORES="false")
    r = httpx.post(pod.url + "/event-stores", json={"name": STORE})
    assert r.status_code in (201, 409)
    bad = [
        ({"position": "soon"}, None, "position"),
        ({"position": "{not json"}, None, "position"),
        ({"position": {"time": "yesterday"}}, None, "position"),
        ({"eventFilter": ""}, None, "eventFilter"),
        ({"eventFilter": "[1, 2"}, None, "eventFilter"),
        ({"eventFilter": "[]"}, None, "eventFilter"),
        ({"position": "2026-13-45T99:00:00Z"}, None, "position"),
        ({"match": "[1]"}, None, "match"),
        ({"match": "{"}, None, "match"),
        ({"query": {"items": []}}, None, "query"),
        ({"since": "1"}, None, "since"),
        ({"streamId": ["a", "b"]}, None, "streamId"),
        ({}, "seven", "Last-Event-ID"),
    ]
    for params, last_id, field in bad:
        client = await SseClient(pod.port, STORE, params, last_event_id=last_id).open()
        assert client.status == 400, (params, client.error_body)
        assert client.error_body["error"] == "VALIDATION_ERROR"
        assert field in client.error_body["message"], client.error_body
    missing = await SseClient(pod.port, "no-such-store", {}).open()
    assert missing.status == 404
    assert missing.error_body["error"] == "EVENT_STORE_NOT_FOUND"


async def test_cors_headers_as_on_every_other_answer(redis_url, pods):
    """With origins configured, SSE answers carry the same CORS headers as the pod's other
    answers (the stream's GET skips the middleware stack: gateway/app.py): an allowed origin's
    stream and its errors name the origin, another origin is refused (403) without it, and the
    preflight is answered."""
    origin = "https://app.example"
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_ALLOWED_ORIGINS=origin)
    await fill(pod, 2)
    allowed = await SseClient(pod.port, STORE, {"position": "earliest"}, {"Origin": origin}).open()
    assert allowed.status == 200
    assert allowed.response_headers["content-type"].startswith("text/event-stream")
    assert allowed.response_headers["access-control-allow-origin"] == origin
    assert allowed.response_headers["access-control-expose-headers"] == "Retry-After"
    assert allowed.response_headers["vary"] == "Origin"
    await allowed.wait(lambda: allowed.named("caughtUp"), what="caughtUp")
    assert allowed.positions == [1, 2]
    await allowed.aclose()
    bad = await SseClient(pod.port, STORE, {"since": "1"}, {"Origin": origin}).open()
    assert bad.status == 400 and bad.error_body["error"] == "VALIDATION_ERROR"
    assert bad.response_headers["access-control-allow-origin"] == origin
    assert bad.response_headers["vary"] == "Origin"
    foreign = await SseClient(pod.port, STORE, {}, {"Origin": "https://evil.example"}).open()
    assert foreign.status == 403
    assert foreign.error_body == {"error": "FORBIDDEN", "message": "origin not allowed"}
    assert "access-control-allow-origin" not in foreign.response_headers
    assert foreign.response_headers["access-control-expose-headers"] == "Retry-After"
    assert foreign.response_headers["vary"] == "Origin"
    plain = await SseClient(pod.port, STORE, {}).open()  # no Origin: not a CORS request
    assert plain.status == 200
    assert "access-control-allow-origin" not in plain.response_headers
    assert "access-control-expose-headers" not in plain.response_headers
    assert plain.response_headers["vary"] == "Origin"
    await plain.aclose()
    preflight = httpx.options(
        f"{pod.url}/event-stores/{STORE}/events/sse",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin


async def test_credentials_as_for_the_websocket(redis_url, pods, keys):
    env = {
        "DELTAGATE_AUTH": "enabled",
        "DELTAGATE_ADMIN_KEY": ADMIN,
        "DELTAGATE_TOKEN_SECRET": TOKEN_SECRET,
        "DELTAGATE_MAX_CONNECTIONS_PER_KEY": "2",
    }
    (pod,) = spawn_pods(pods, redis_url, 1, **env)
    admin = {"X-API-Key": ADMIN}
    for store in (STORE, "other"):
        assert httpx.post(pod.url + "/event-stores", json={"name": store}, headers=admin)
    _, reader = await keys.create("reader", ["read:events"])
    _, watcher = await keys.create("watcher", ["read:events", "connect:websockets"])
    _, elsewhere = await keys.create("elsewhere", ["*"], ["other"])

    async def status(params: dict, headers: dict | None = None) -> tuple[int, str | None]:
        client = SseClient(pod.port, STORE, params, headers=headers or {})
        await client.open(read=False)
        code = client.status
        error = (client.error_body or {}).get("error")
        if code == 200:
            await client.aclose()
        assert code is not None
        return code, error

    assert await status({}) == (401, "UNAUTHORIZED")
    assert await status({"apiKey": "dg_nope"}) == (401, "UNAUTHORIZED")
    assert await status({"apiKey": reader}) == (403, "FORBIDDEN")  # may not connect
    assert await status({}, {"X-API-Key": elsewhere}) == (403, "FORBIDDEN")  # other store
    assert (await status({}, {"Authorization": f"Bearer {watcher}"}))[0] == 200
    assert (await status({"apiKey": watcher}))[0] == 200

    def mint(body: dict, store: str = STORE) -> str:
        r = httpx.post(f"{pod.url}/event-stores/{store}/ws-tokens", json=body, headers=admin)
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    narrow = mint({"eventFilter": "order.*", "ttlSeconds": 60})
    assert await status({"token": narrow, "eventFilter": "user.*"}) == (403, "FORBIDDEN")
    assert await status({"token": mint({}, "other")}) == (403, "FORBIDDEN")
    assert await status({"token": "not-a-token"}) == (401, "UNAUTHORIZED")
    # The token's narrowing holds: no eventFilter means the token's own.
    async with httpx.AsyncClient(timeout=10) as http:
        for i, kind in enumerate(["order.placed", "user.created", "order.shipped"]):
            r = await http.post(
                f"{pod.url}/event-stores/{STORE}/streams/s-{i}",
                json={"events": [{"type": kind, "data": {}}]},
                headers=admin,
            )
            assert r.status_code == 201
    # (``new EventSource(url + "?token=...")``: a narrowed token alone, no eventFilter)
    for asked in ({}, {"eventFilter": "order.*"}):
        client = await SseClient(
            pod.port, STORE, {"authToken": narrow, "position": "earliest", **asked}
        ).open()
        await client.wait(lambda c=client: c.named("caughtUp"), what="caughtUp with a token")
        assert client.positions == [1, 3], asked
        await client.aclose()
    # One connection quota per key, WebSockets and SSE together.
    ws = await websockets.connect(f"{pod.ws_url}/event-stores/{STORE}/events/ws?apiKey={watcher}")
    first = await SseClient(pod.port, STORE, {"apiKey": watcher}).open()
    assert first.status == 200
    assert await status({"apiKey": watcher}) == (429, "RATE_LIMIT_EXCEEDED")
    await first.aclose()
    await ws.close()


async def test_sigterm_ends_streams_and_clients_resume_elsewhere(redis_url, pods):
    draining, other = spawn_pods(
        pods, redis_url, 2, DELTAGATE_DRAIN_SECONDS="1", DELTAGATE_GRACE_PERIOD="10", **FAST
    )
    await fill(other, 10)
    clients = [await sse(draining, position="earliest").open() for _ in range(3)]
    for client in clients:
        await client.wait(lambda c=client: c.named("caughtUp"), what="caughtUp")
    draining.signal(signal.SIGTERM)
    for client in clients:
        await client.wait(lambda c=client: c.ended, what="the response to end")
        (close,) = client.named("close")
        assert close.data["code"] == 1012
    assert draining.proc is not None
    code = await asyncio.get_running_loop().run_in_executor(None, draining.proc.wait, 15)
    assert code == 0, draining.log()
    await fill(other, 10, seed=5)
    for client in clients:
        again = await SseClient(
            other.port, STORE, client.params, last_event_id=client.last_event_id
        ).open()
        await again.wait(lambda a=again: len(a.positions) == 10, what="the rest")
        assert client.positions + again.positions == list(range(1, 21))
        await again.aclose()


def metric(pod: Pod, name: str) -> float:
    return sample(httpx.get(pod.url + "/metrics").text, name) or 0.0


async def test_slow_reader_is_demoted_then_catches_up(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_WS_SEND_QUEUE="64", **FAST)
    slow = await SseClient(pod.port, STORE, {}, rcvbuf=8 * 1024).open(read=False)
    assert metric(pod, "deltagate_sse_connections") == 1
    blob = random.Random(3).randbytes(1500).hex()
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(40):
            await append(http, pod, "s", [{"type": "a.b", "data": {"b": blob}}] * 50)
    assert metric(pod, "deltagate_ws_demoted_total") > 0, "the slow reader was never demoted"
    slow.start_reading()
    await slow.wait(lambda: len(slow.positions) == 2000, timeout=60, what="everything")
    assert slow.positions == list(range(1, 2001))
    assert metric(pod, 'deltagate_sse_events_delivered_total{mode="replay"}') > 0
    await slow.aclose()


async def test_a_reader_that_never_reads_is_cut(redis_url, pods):
    (pod,) = spawn_pods(
        pods, redis_url, 1, DELTAGATE_WS_SEND_QUEUE="64", DELTAGATE_SLOW_CONSUMER_TIMEOUT="2"
    )
    stuck = await SseClient(pod.port, STORE, {}, rcvbuf=8 * 1024).open(read=False)
    blob = random.Random(4).randbytes(1500).hex()
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(40):
            await append(http, pod, "s", [{"type": "a.b", "data": {"b": blob}}] * 50)
    deadline = time.monotonic() + 15
    while metric(pod, 'deltagate_sse_closes_total{code="4008"}') != 1:
        assert time.monotonic() < deadline, (
            "the stuck reader was never cut: "
            + httpx.get(pod.url + "/metrics").text[-3000:]
            + pod.log()
        )
        await asyncio.sleep(0.2)
    assert metric(pod, "deltagate_sse_connections") == 0
    stuck.close()
    assert "returned without completing" not in pod.log()
