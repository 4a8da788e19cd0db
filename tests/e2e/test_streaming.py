"""Live streaming end to end: real Redis, real gateway processes, real WebSocket clients.

Every test compares what each client received with what the log holds: the exact list of
matching globalPositions after its start point, in order, none twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
import websockets

from broker import Filter
from tests.e2e.wsclient import Client
from tests.harness import Pod, RedisServer, spawn_pods

STORE = "live"
TYPES = [
    "order.placed",
    "order.shipped",
    "order.delivered",
    "user.created",
    "user.deleted",
    "payment.created",
    "audit.noted",
]
FAST = {"DELTAGATE_CHECKPOINT_INTERVAL": "1", "DELTAGATE_POLL_INTERVAL": "0.5"}


def log_entries(redis_url: str, store: str = STORE) -> list[tuple[int, str, str]]:
    """(globalPosition, streamId, type) of every event in the store's log, from Redis."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    entries = client.xrange(f"dg:{{{store}}}:log", "-", "+")
    return [(int(i.split("-")[0]), f["s"], f["t"]) for i, f in entries]


def expected(entries: list[tuple[int, str, str]], flt: Filter, after: int) -> list[int]:
    return [gp for gp, sid, t in entries if gp > after and flt.matches(sid, t)]


async def append(
    http: httpx.AsyncClient,
    pod: Pod,
    stream: str,
    events: list[dict[str, Any]],
    key: str | None = None,
) -> dict[str, Any]:
    """Append, retrying on 503 with the same idempotency key (so a retry never doubles)."""
    headers = {"Idempotency-Key": key} if key else {}
    for _ in range(200):
        try:
            r = await http.post(
                f"{pod.url}/event-stores/{STORE}/streams/{stream}",
                json={"events": events},
                headers=headers,
            )
        except httpx.TransportError:
            await asyncio.sleep(0.05)
            continue
        if r.status_code == 503:
            await asyncio.sleep(0.05)
            continue
        assert r.status_code == 201, r.text
        return r.json()
    raise AssertionError("append kept failing")


def random_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    return [{"type": rng.choice(TYPES), "data": {"n": rng.randrange(10**6)}} for _ in range(n)]


async def load(
    pods: list[Pod],
    total: int,
    batch: int,
    rng: random.Random,
    concurrency: int = 8,
    key_prefix: str | None = None,
) -> None:
    """Append ``total`` events in batches through all pods concurrently."""
    queue = list(range(total // batch))

    async def worker(http: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            pod = pods[i % len(pods)]
            key = f"{key_prefix}-{i}" if key_prefix else None
            await append(http, pod, f"s-{i % 37}", random_events(rng, batch), key)

    async with httpx.AsyncClient(timeout=10) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))


def assert_exact(client: Client, entries: list[tuple[int, str, str]], flt: Filter, after: int):
    assert not client.got.resets, f"a false reset: {client.got.resets}"
    assert not client.got.truncated, f"a false truncation: {client.got.truncated}"
    got = client.got.positions
    want = expected(entries, flt, after)
    assert got == sorted(set(got)), "events out of order or repeated"
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"missing {missing[:10]}.. extra {extra[:10]}.."
    assert got == want


SUBSCRIPTIONS: list[tuple[Any, str | None, Any]] = [
    ("*", None, "earliest"),
    ("order.*", None, "latest"),
    ("*.created", None, "earliest"),
    (["order.placed", "user.deleted"], None, "latest"),
    ("*", "s-3", "earliest"),
    ("user.*", None, 0),
    ("audit.noted", None, "latest"),
    ("payment.*", "s-5", "earliest"),
    ("*", None, "latest"),
]


async def test_gapless_across_three_pods_with_random_resumes(redis_url, pods):
    spawned = spawn_pods(pods, redis_url, 3, **FAST)
    rng = random.Random(7)
    # Seed some history so earliest/numeric have something to replay.
    await load(spawned, 500, 50, rng)
    clients: list[tuple[Client, Filter, int, Any, str | None]] = []
    for i, (flt, sid, position) in enumerate(SUBSCRIPTIONS):
        client = Client(spawned[i % 3].ws_url, STORE)
        await client.connect()
        await client.subscribe(flt, position, sid)
        start = (
            client.got.subscribed[0]["position"]
            if position == "latest"
            else (0 if position == "earliest" else position)
        )
        clients.append((client, Filter.parse(flt, sid), start, flt, sid))

    stop = asyncio.Event()

    async def chaos() -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            client, _, _, flt, sid = rng.choice(clients)
            await client.resume(rng.choice(spawned).ws_url, flt, sid)

    chaos_task = asyncio.create_task(chaos())
    await load(spawned, 10_000, 20, rng, concurrency=12)
    stop.set()
    await chaos_task
    entries = log_entries(redis_url)
    assert [e[0] for e in entries] == list(range(1, 10_501)), "log positions are not gapless"
    for client, flt, start, _, _ in clients:
        want = expected(entries, flt, start)
        await client.wait(lambda c=client, w=want: len(c.got.events) >= len(w), what="all events")
        await asyncio.sleep(0.2)  # anything extra would arrive now
        assert_exact(client, entries, flt, start)
        await client.disconnect()


async def test_each_position_and_filter_form(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    async with httpx.AsyncClient() as http:
        await append(
            http,
            pod,
            "order-1",
            [{"type": "order.placed", "data": {}}, {"type": "order.shipped", "data": {}}],
        )
        await append(http, pod, "user-1", [{"type": "user.created", "data": {}}])
        cases = {
            "earliest-all": ("*", None, "earliest", [1, 2, 3, 4, 5, 6]),
            "numeric": ("*", None, 2, [3, 4, 5, 6]),
            "latest": ("*", None, "latest", [4, 5, 6]),
            "prefix": ("order.*", None, "earliest", [1, 2, 4]),
            "suffix": ("*.created", None, "earliest", [3, 5]),
            "exact": ("order.placed", None, "earliest", [1, 4]),
            "list": (["order.shipped", "user.*"], None, "earliest", [2, 3, 5, 6]),
            "stream": ("*", "order-1", "earliest", [1, 2, 4]),
            "stream-latest": ("*", "user-1", "latest", [5, 6]),
        }
        clients = {}
        for name, (flt, sid, position, _) in cases.items():
            client = Client(pod.ws_url, STORE)
            await client.connect()
            await client.subscribe(flt, position, sid)
            clients[name] = client
        assert clients["latest"].got.subscribed[0]["position"] == 3
        await append(http, pod, "order-1", [{"type": "order.placed", "data": {}}])
        await append(
            http,
            pod,
            "user-1",
            [{"type": "user.created", "data": {}}, {"type": "user.deleted", "data": {}}],
        )
    for name, (_, _, _, want) in cases.items():
        client = clients[name]
        await client.wait(lambda c=client, w=want: len(c.got.events) >= len(w), what=name)
        await asyncio.sleep(0.1)
        assert client.got.positions == want, name
        await client.disconnect()
    replayed = clients["earliest-all"].got
    assert replayed.caught_up is not None and replayed.caught_up >= 3


async def test_connect_filter_query_and_subscription_ids(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1)
    client = Client(pod.ws_url, STORE)
    query = "?filter=" + quote(json.dumps({"type": "order.*", "streamId": "o-1"}))
    await client.connect(query=query)
    await client.wait(lambda: client.got.subscribed, what="subscribed at connect")
    await client.send(action="subscribe", eventFilter="*", subscriptionId="mine")
    await client.wait(lambda: len(client.got.subscribed) == 2, what="second subscription")
    assert client.got.subscribed[0]["eventFilter"] == "order.*"
    assert client.got.subscribed[0]["streamId"] == "o-1"
    raw: list[dict[str, Any]] = []
    original = client.on_message
    client.on_message = lambda m: (raw.append(m), original(m))  # type: ignore[method-assign]
    async with httpx.AsyncClient() as http:
        await append(http, pod, "o-1", [{"type": "order.placed", "data": {}}])
        await append(http, pod, "o-2", [{"type": "order.placed", "data": {}}])
    await client.wait(lambda: len(client.got.events) == 3, what="three deliveries")
    await client.send(action="unsubscribe", subscriptionId="mine")
    await client.wait(lambda: any(m["type"] == "unsubscribed" for m in raw), what="unsubscribed")
    by_sub = sorted(
        (m["subscriptionId"], m["event"]["globalPosition"]) for m in raw if m["type"] == "event"
    )
    assert by_sub == [("mine", 1), ("mine", 2), (client.got.subscribed[0]["subscriptionId"], 1)]
    await client.disconnect()


async def test_replay_to_live_switch_with_racing_appends(redis_url, pods):
    spawned = spawn_pods(pods, redis_url, 2, **FAST)
    rng = random.Random(11)
    await load(spawned, 6000, 100, rng)
    running = asyncio.create_task(load(spawned, 3000, 10, rng, concurrency=6))
    clients = []
    for i, (flt, position) in enumerate(
        [("*", "earliest"), ("order.*", 1000), ("*", 5999), ("user.*", "earliest")]
    ):
        await asyncio.sleep(0.05)
        client = Client(spawned[i % 2].ws_url, STORE)
        await client.connect()
        await client.subscribe(flt, position)
        clients.append((client, Filter.parse(flt), 0 if position == "earliest" else position))
    await running
    entries = log_entries(redis_url)
    assert len(entries) == 9000
    for client, flt, start in clients:
        want = expected(entries, flt, start)
        await client.wait(lambda c=client, w=want: len(c.got.events) >= len(w), what="replay")
        await asyncio.sleep(0.2)
        assert_exact(client, entries, flt, start)
        assert client.got.caught_up is not None
        await client.disconnect()


async def test_pubsub_connection_killed_mid_stream(redis_server: RedisServer, redis_url, pods):
    spawned = spawn_pods(pods, redis_url, 2, **FAST)
    rng = random.Random(3)
    clients = []
    for pod in spawned:
        client = Client(pod.ws_url, STORE)
        await client.connect()
        await client.subscribe("*", "latest")
        clients.append(client)
    admin = redis_server.client()

    async def killer() -> int:
        killed = 0
        for _ in range(6):
            await asyncio.sleep(0.3)
            killed += admin.client_kill_filter(_type="pubsub")
        return killed

    kills = asyncio.create_task(killer())
    await load(spawned, 4000, 10, rng, concurrency=6)
    assert await kills > 0
    entries = log_entries(redis_url)
    for client in clients:
        await client.wait(lambda c=client: len(c.got.events) >= len(entries), what="all events")
        await asyncio.sleep(0.2)
        assert_exact(client, entries, Filter.parse("*"), 0)
        await client.disconnect()
    metrics = httpx.get(spawned[0].url + "/metrics").text
    assert "deltagate_pubsub_reconnects_total" in metrics


async def test_redis_restart_mid_stream(redis_server: RedisServer, redis_url, pods):
    spawned = spawn_pods(pods, redis_url, 2, **FAST)
    rng = random.Random(5)
    clients = []
    for pod in spawned:
        client = Client(pod.ws_url, STORE)
        await client.connect()
        await client.subscribe("order.*", "latest")
        clients.append(client)
    await load(spawned, 500, 10, rng, key_prefix="a")
    loop = asyncio.get_running_loop()
    restart = loop.run_in_executor(None, redis_server.restart, 1.0)
    await load(spawned, 1000, 10, rng, concurrency=4, key_prefix="b")
    await restart
    await load(spawned, 500, 10, rng, key_prefix="c")
    entries = log_entries(redis_url)
    assert [e[0] for e in entries] == list(range(1, 2001)), "appends lost or doubled"
    flt = Filter.parse("order.*")
    for client in clients:
        want = expected(entries, flt, 0)
        await client.wait(
            lambda c=client, w=want: len(c.got.events) >= len(w),
            timeout=30,
            what="events after the restart",
        )
        await asyncio.sleep(0.2)
        assert_exact(client, entries, flt, 0)
        assert client.close_code is None, "the pod dropped the client during the outage"
        await client.disconnect()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_slow_reader_is_demoted_and_catches_up(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_WS_SEND_QUEUE="256", **FAST)
    assert pod.proc is not None
    fast = Client(pod.ws_url, STORE)
    await fast.connect()
    await fast.subscribe("*", "latest")
    # The slow client: websockets stops reading the socket once its queue of 4 is full, and a
    # small receive buffer keeps the kernel from absorbing megabytes on its behalf.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", pod.port))
    slow_ws = await websockets.connect(
        f"{pod.ws_url}/event-stores/{STORE}/events/ws", max_queue=4, max_size=None, sock=sock
    )
    await slow_ws.send(json.dumps({"action": "subscribe", "eventFilter": "*"}))
    subscribed = json.loads(await slow_ws.recv())
    assert subscribed["type"] == "subscribed"
    baseline = rss_kib(pod.proc.pid)
    rng = random.Random(1)
    blob = rng.randbytes(1000).hex()  # incompressible, should compression ever be on

    async def big_load() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            for i in range(300):
                events = [
                    {"type": rng.choice(TYPES), "data": {"blob": blob, "i": i}} for _ in range(100)
                ]
                await append(http, pod, f"s-{i % 7}", events)

    await big_load()  # 30,000 events, ~66 MB of event JSON
    entries = log_entries(redis_url)
    await fast.wait(
        lambda: len(fast.got.events) == len(entries),
        timeout=30,
        what="the fast client to receive everything while the slow one stalls",
    )
    grown = rss_kib(pod.proc.pid) - baseline
    metrics = httpx.get(pod.url + "/metrics").text
    # Unbounded queueing would hold the ~66 MB of frames for the slow client (and more).
    assert grown < 40 * 1024, f"pod RSS grew by {grown} KiB while a client stalled"
    assert "deltagate_ws_demoted_total 0.0" not in metrics, "the slow reader was never demoted"
    received: list[int] = []
    while len(received) < len(entries):
        msg = json.loads(await asyncio.wait_for(slow_ws.recv(), 20))
        if msg["type"] == "event":
            received.append(msg["event"]["globalPosition"])
    assert received == [e[0] for e in entries]
    metrics = httpx.get(pod.url + "/metrics").text
    assert "deltagate_ws_promoted_total 0.0" not in metrics
    await slow_ws.close()
    await fast.disconnect()


async def test_malformed_frames_are_answered_and_the_pod_survives(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1)
    client = Client(pod.ws_url, STORE)
    await client.connect()
    bad: list[Any] = [
        "not json",
        "[1,2]",
        "42",
        json.dumps({"no": "action"}),
        json.dumps({"action": "dance"}),
        json.dumps({"action": 7}),
        json.dumps({"action": "subscribe"}),
        json.dumps({"action": "subscribe", "eventFilter": ""}),
        json.dumps({"action": "subscribe", "eventFilter": []}),
        json.dumps({"action": "subscribe", "eventFilter": [1]}),
        json.dumps({"action": "subscribe", "eventFilter": ["a"] * 33}),
        json.dumps({"action": "subscribe", "eventFilter": "a\u0000b"}),
        json.dumps({"action": "subscribe", "eventFilter": "*", "position": -1}),
        json.dumps({"action": "subscribe", "eventFilter": "*", "position": "soon"}),
        json.dumps({"action": "subscribe", "eventFilter": "*", "position": True}),
        json.dumps({"action": "subscribe", "eventFilter": "*", "position": 1e300}),
        json.dumps({"action": "subscribe", "eventFilter": "*", "streamId": 5}),
        json.dumps({"action": "unsubscribe", "subscriptionId": "nope"}),
        "{" * 5000,
        b"\x00binary",
    ]
    for frame in bad:
        await client.ws.send(frame)
    await client.wait(lambda: len(client.got.errors) == len(bad), what="one error per frame")
    codes = [e["error"] for e in client.got.errors]
    assert set(codes) <= {"INVALID_MESSAGE", "VALIDATION_ERROR"}, codes
    for i in range(100):
        await client.send(action="subscribe", eventFilter="*", subscriptionId=f"s{i}")
    await client.send(action="subscribe", eventFilter="*", subscriptionId="one-too-many")
    await client.wait(
        lambda: any(e["error"] == "LIMIT_EXCEEDED" for e in client.got.errors),
        what="LIMIT_EXCEEDED",
    )
    await client.send(action="subscribe", eventFilter="*", subscriptionId="s1")
    pongs: list[dict[str, Any]] = []
    original = client.on_message
    client.on_message = lambda m: pongs.append(m) if m["type"] == "pong" else original(m)  # type: ignore[method-assign]
    await client.send(action="ping")
    await client.wait(lambda: pongs, what="pong after the garbage")
    # Oversized: closed with 1009, the pod keeps serving.
    await client.ws.send(json.dumps({"action": "ping", "pad": "x" * 70_000}))
    await client.wait(lambda: client.close_code is not None, what="close")
    assert client.close_code == 1009
    assert httpx.get(pod.url + "/readyz").status_code == 200
    again = Client(pod.ws_url, STORE)
    await again.connect()
    await again.subscribe("*")
    await again.disconnect()


# Eight stars, within the caps: a backtracking matcher takes minutes on a type of 255 'a's.
EVIL = "*a" * 7 + "*b"
LONG_TYPES = [{"type": "a" * 255, "data": {}}, {"type": "a" * 254 + "b", "data": {}}]


async def timed_append(pod: Pod, event_type: str) -> float:
    """Another client's append, sent once: the seconds it took to be answered with 201."""
    async with httpx.AsyncClient(timeout=5) as other:
        started = time.monotonic()
        r = await other.post(
            f"{pod.url}/event-stores/{STORE}/streams/other",
            json={"events": [{"type": event_type, "data": {}}]},
        )
        assert r.status_code == 201, r.text
        return time.monotonic() - started


async def test_adversarial_pattern_in_a_query_does_not_stall_the_pod(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1)
    async with httpx.AsyncClient(timeout=5) as http:
        await append(http, pod, "evil", LONG_TYPES, key="evil")  # positions 1, 2; only 2 matches

        async def query() -> httpx.Response:
            # A longer timeout than the other client's: what must not wait is that client.
            url = f"{pod.url}/event-stores/{STORE}/events"
            return await http.get(url, params={"type": EVIL}, timeout=10)

        async def meanwhile() -> float:
            await asyncio.sleep(0.1)  # the query goes first
            return await timed_append(pod, "order.placed")

        async with asyncio.TaskGroup() as tasks:
            queried = tasks.create_task(query())
            other = tasks.create_task(meanwhile())
    assert queried.result().status_code == 200, queried.result().text
    assert [e["globalPosition"] for e in queried.result().json()["events"]] == [2]
    assert other.result() < 5


async def test_adversarial_pattern_in_a_subscription_does_not_stall_the_pod(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1)
    async with httpx.AsyncClient(timeout=5) as http:
        await append(http, pod, "evil", LONG_TYPES, key="evil")
    client = Client(pod.ws_url, STORE)
    await client.connect()
    await client.send(action="subscribe", eventFilter=EVIL, position="earliest")
    # While the replay runs, and then live: a type the pattern must reject, then one it matches.
    assert await timed_append(pod, "a" * 255) < 5  # position 3
    assert await timed_append(pod, "a" * 200 + "b") < 5  # position 4
    await client.wait(lambda: len(client.got.events) >= 2, timeout=5, what="the matching events")
    await asyncio.sleep(0.1)
    assert client.got.positions == [2, 4]
    assert client.got.subscribed[0]["eventFilter"] == EVIL
    # Over the cap: refused, and the connection stays open.
    await client.send(action="subscribe", eventFilter=["*", "*a" * 17], subscriptionId="x")
    await client.wait(lambda: client.got.errors, timeout=5, what="an error")
    (error,) = client.got.errors
    assert error["error"] == "VALIDATION_ERROR" and error["subscriptionId"] == "x"
    assert "more than 16 '*' wildcards" in error["message"]
    await client.send(action="subscribe", eventFilter="*b", position="earliest")
    await client.wait(lambda: len(client.got.subscribed) == 2, timeout=5, what="subscribed")
    await client.disconnect()
    at_connect = Client(pod.ws_url, STORE)
    await at_connect.connect(query="?filter=" + quote(json.dumps({"type": "*a" * 17})))
    await at_connect.wait(lambda: at_connect.got.errors, timeout=5, what="an error at connect")
    assert at_connect.got.errors[0]["error"] == "VALIDATION_ERROR"
    await at_connect.disconnect()


async def test_unknown_store_is_closed_4004(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_AUTO_CREATE_STORES="false")
    for store in ("missing", "Bad{Name}*"):
        async with websockets.connect(f"{pod.ws_url}/event-stores/{store}/events/ws") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 4004


@pytest.mark.skipif(os.environ.get("DG_SOAK") != "1", reason="soak: set DG_SOAK=1")
@pytest.mark.slow
@pytest.mark.timeout(1200)  # (the suite's 60 s fired inside a client's read: it lost its socket)
async def test_soak_many_resumes(redis_url, pods):
    spawned = spawn_pods(pods, redis_url, 3, **FAST)
    rng = random.Random(int(time.time()))
    clients = []
    for i in range(30):
        client = Client(spawned[i % 3].ws_url, STORE)
        await client.connect()
        await client.subscribe("*", "earliest")
        clients.append(client)
    stop = asyncio.Event()

    async def chaos() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)
            await rng.choice(clients).resume(rng.choice(spawned).ws_url, "*")

    task = asyncio.create_task(chaos())
    await load(spawned, 100_000, 50, rng, concurrency=16)
    stop.set()
    await task
    entries = log_entries(redis_url)
    for client in clients:
        await client.wait(lambda c=client: len(c.got.events) >= len(entries), timeout=120)
        assert_exact(client, entries, Filter.parse("*"), 0)


async def test_client_that_never_reads_is_cut_off_and_released(redis_url, pods):
    (pod,) = spawn_pods(
        pods, redis_url, 1, DELTAGATE_WS_SEND_QUEUE="64", DELTAGATE_SLOW_CONSUMER_TIMEOUT="2"
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024)
    sock.connect(("127.0.0.1", pod.port))
    stuck = await websockets.connect(
        f"{pod.ws_url}/event-stores/{STORE}/events/ws", max_queue=1, sock=sock, ping_interval=None
    )
    await stuck.send(json.dumps({"action": "subscribe", "eventFilter": "*"}))
    assert json.loads(await stuck.recv())["type"] == "subscribed"
    blob = random.Random(2).randbytes(1500).hex()
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(60):
            await append(http, pod, "s", [{"type": "a.b", "data": {"b": blob}}] * 50)

    def gauge(name: str) -> float:
        for line in httpx.get(pod.url + "/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(name)

    deadline = time.monotonic() + 15
    while gauge("deltagate_ws_subscriptions") != 0:
        assert time.monotonic() < deadline, "the stuck client's subscription was never released"
        await asyncio.sleep(0.2)
    while gauge("deltagate_ws_connections") != 0:
        assert time.monotonic() < deadline, "the stuck client's connection was never released"
        await asyncio.sleep(0.2)
    # Reading again, it gets what the pod had sent, then the reason it was cut: 4008, not a
    # reset connection (1006).
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(stuck.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008, closed.value
    # The pod serves others normally.
    other = Client(pod.ws_url, STORE)
    await other.connect()
    await other.subscribe("*", "earliest")
    await other.wait(lambda: len(other.got.events) == 3000, what="a healthy client's replay")
    await other.disconnect()
    stuck.transport.abort()
