"""The data lifecycle end to end (docs/lifecycle.md): real gateway processes on a real Redis and a
real PostgreSQL archive. Redis keeps only the hot end of a store; replays and reads cross into the
archive with nothing missed or doubled; history that is gone is said to be gone; a full or an
evicting Redis is refused clearly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any, NamedTuple

import httpx
import pytest
import redis

from tests.e2e.wsclient import Client
from tests.harness import Pod, PostgresServer, RedisServer, spawn_pods, wait_for

STORE = "ledger"
FAST = {"DELTAGATE_LIFECYCLE_INTERVAL": "0.1", "DELTAGATE_POLL_INTERVAL": "0.5"}


def batch(start: int, n: int) -> dict[str, Any]:
    return {"events": [{"type": "entry.posted", "data": {"n": start + i}} for i in range(n)]}


def append_many(pod: Pod, total: int, streams: int = 6, size: int = 100) -> None:
    with httpx.Client(base_url=pod.url, timeout=10) as http:
        for start in range(0, total, size):
            stream = f"account-{(start // size) % streams}"
            response = http.post(f"/event-stores/{STORE}/streams/{stream}", json=batch(start, size))
            assert response.status_code == 201, response.text


def meta(redis_url: str) -> dict[str, str]:
    return redis.Redis.from_url(redis_url, decode_responses=True).hgetall(f"dg:{{{STORE}}}:meta")


def hot_entries(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).xlen(f"dg:{{{STORE}}}:log"))


def create_store(pod: Pod, settings: dict[str, Any]) -> None:
    response = httpx.post(
        f"{pod.url}/event-stores", json={"name": STORE, "settings": settings}, timeout=10
    )
    assert response.status_code == 201, response.text


async def replay(pod: Pod, position: Any = "earliest") -> Client:
    client = Client(pod.ws_url, STORE)
    await client.connect()
    await client.subscribe("*", position)
    await client.wait(lambda: client.got.caught_up is not None, timeout=60, what="caughtUp")
    return client


def all_events(pod: Pod) -> list[int]:
    """Every position, through the REST query (pages of 1000 across the boundary)."""
    out: list[int] = []
    with httpx.Client(base_url=pod.url, timeout=10) as http:
        while True:
            page = http.get(
                f"/event-stores/{STORE}/events",
                params={"fromPosition": (out[-1] + 1) if out else 1, "limit": 1000},
            ).json()
            out += [e["globalPosition"] for e in page["events"]]
            if not page["pagination"]["hasMore"]:
                return out


async def test_redis_keeps_the_hot_end_and_earliest_replays_everything_then_live(
    pods: list[Pod], redis_url: str, archive_url: str
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_ARCHIVE_URL=archive_url, **FAST)
    create_store(pod, {"hotRetention": {"maxEvents": 1000}})
    append_many(pod, 6000)
    wait_for(lambda: hot_entries(redis_url) <= 1000, timeout=60, what="Redis to keep 1000")
    info = httpx.get(f"{pod.url}/event-stores/{STORE}").json()["statistics"]
    assert info["hotEvents"] == 1000 and info["archivedEvents"] == 6000
    assert info["totalEvents"] == 6000 and info["oldestPosition"] == 1
    client = await replay(pod)
    assert client.got.positions == list(range(1, 6001))
    assert not client.got.truncated
    append_many(pod, 100)
    await client.wait(lambda: len(client.got.events) == 6100, what="live events")
    assert client.got.positions == list(range(1, 6101))
    await client.disconnect()
    assert all_events(pod) == list(range(1, 6101))


async def test_a_resume_into_trimmed_history_without_an_archive_is_told(
    pods: list[Pod], redis_url: str
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    create_store(pod, {"hotRetention": {"maxEvents": 100}})
    append_many(pod, 500)
    wait_for(lambda: hot_entries(redis_url) <= 100, timeout=30, what="retention")
    client = await replay(pod, 10)
    assert client.got.truncated == [
        {
            "type": "truncated",
            "subscriptionId": "sub-1",
            "requestedPosition": 10,
            "earliestPosition": 401,
        }
    ]
    assert client.got.positions == list(range(401, 501))
    append_many(pod, 100)
    await client.wait(lambda: len(client.got.events) == 200, what="live events")
    await client.disconnect()
    wait_for(lambda: meta(redis_url).get("oldest") == "501", timeout=30, what="retention")
    earliest = await replay(pod)  # earliest asks for what is kept: no news to report
    assert not earliest.got.truncated and earliest.got.positions[0] == 501
    await earliest.disconnect()
    response = httpx.get(f"{pod.url}/event-stores/{STORE}/events", params={"fromPosition": 1})
    assert response.json()["truncatedBefore"] == 501
    # A range wholly before what is kept says so too, in either direction.
    for direction in ("asc", "desc"):
        response = httpx.get(
            f"{pod.url}/event-stores/{STORE}/events",
            params={"fromPosition": 1, "toPosition": 50, "sortDirection": direction},
        )
        assert response.json()["events"] == [] and response.json()["truncatedBefore"] == 501
    # The DCB query is a read too: from before what is kept, it says so.
    query = {"query": {"items": [{"types": ["nothing.matches"]}]}}
    response = httpx.post(f"{pod.url}/event-stores/{STORE}/query", json=query)
    assert response.json() == {"lastPosition": 0, "truncatedBefore": 501, "events": []}
    response = httpx.post(f"{pod.url}/event-stores/{STORE}/query", json={**query, "after": 500})
    assert response.json() == {"lastPosition": 500, "events": []}
    # A start from a time before what is kept asked for history that is gone: told the same way
    # (the events from that time on may have been deleted), also over REST with fromDate.
    since = {"time": "2020-01-01T00:00:00Z"}
    timed = await replay(pod, since)
    assert [(t["requestedPosition"], t["earliestPosition"]) for t in timed.got.truncated] == [
        (0, 501)
    ]
    assert timed.got.positions == list(range(501, 601))
    await timed.disconnect()
    response = httpx.get(
        f"{pod.url}/event-stores/{STORE}/events", params={"fromDate": since["time"], "limit": 1}
    )
    assert response.json()["truncatedBefore"] == 501
    assert [e["globalPosition"] for e in response.json()["events"]] == [501]


async def test_archiving_survives_a_pod_killed_mid_copy_and_a_postgresql_restart(
    pods: list[Pod], redis_url: str, private_postgres: PostgresServer
) -> None:
    env = {"DELTAGATE_ARCHIVE_URL": private_postgres.url, **FAST}
    first, second = spawn_pods(pods, redis_url, 2, **env)
    create_store(first, {"hotRetention": {"maxEvents": 500}})
    append_many(first, 4000)
    # Kill the pod that holds the store's lease while it copies, then restart PostgreSQL under
    # the survivor; archiving must go on and end with every event once.
    holder = redis.Redis.from_url(redis_url, decode_responses=True).get(f"dg:{{{STORE}}}:lifecycle")
    victim = first if holder and str(first.pid) in holder else second
    survivor = second if victim is first else first
    victim.signal(signal.SIGKILL)
    private_postgres.restart(downtime=1.0)
    append_many(survivor, 2000)
    wait_for(
        lambda: int(meta(redis_url).get("archived", 0)) == 6000, timeout=90, what="all archived"
    )
    wait_for(lambda: hot_entries(redis_url) <= 500, timeout=60, what="retention")
    assert all_events(survivor) == list(range(1, 6001))
    client = await replay(survivor)
    assert client.got.positions == list(range(1, 6001))
    await client.disconnect()


def test_a_full_redis_answers_507_and_keeps_serving_reads(pods: list[Pod], redis_url: str) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1)
    create_store(pod, {})
    append_many(pod, 200)
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("maxmemory", 1)  # full now (noeviction: every write is refused)
    try:
        response = httpx.post(
            f"{pod.url}/event-stores/{STORE}/streams/full", json=batch(0, 50), timeout=10
        )
        assert response.status_code == 507, response.text
        assert response.json()["error"] == "INSUFFICIENT_STORAGE"
        assert admin.hget(f"dg:{{{STORE}}}:meta", "head") == b"200"  # nothing written
        assert admin.xlen(f"dg:{{{STORE}}}:log") == 200
        reads = httpx.get(f"{pod.url}/event-stores/{STORE}/events", params={"limit": 1000})
        assert reads.status_code == 200 and len(reads.json()["events"]) == 200
    finally:
        admin.config_set("maxmemory", 0)
    assert "Traceback" not in pod.log()


def test_a_pod_refuses_a_redis_that_would_evict_the_log(
    pods: list[Pod], redis_server: RedisServer, redis_url: str
) -> None:
    admin = redis_server.client()
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        pod = Pod({"DELTAGATE_REDIS_URL": redis_url, "DELTAGATE_AUTH": "disabled"})
        pods.append(pod)
        pod.start(wait_ready=False)
        wait_for(lambda: httpx.get(pod.url + "/healthz").status_code == 200, what="liveness")
        response = httpx.get(pod.url + "/readyz")
        assert response.status_code == 503
        assert "maxmemory-policy allkeys-lru" in response.json()["message"]
        admin.config_set("maxmemory-policy", "noeviction")
        wait_for(
            lambda: httpx.get(pod.url + "/readyz").status_code == 200,
            timeout=15,
            what="ready once the policy is safe",
        )
    finally:
        admin.config_set("maxmemory-policy", "noeviction")


SOAK_SECONDS = 300.0 if os.environ.get("DG_SOAK") == "1" else 25.0


class Sample(NamedTuple):
    head: int
    entries: int
    """Entries in the store's log stream."""
    store_bytes: int
    """MEMORY USAGE of every key of the store, summed."""
    used_memory: int
    """The whole Redis (INFO memory)."""
    lag: int
    """Events appended but not yet archived."""


def sample(admin: redis.Redis) -> Sample:
    m = admin.hgetall(f"dg:{{{STORE}}}:meta")
    head, archived = int(m.get("head", 0)), int(m.get("archived", 0))
    keys = list(admin.scan_iter(match=f"dg:{{{STORE}}}:*", count=1000))
    store_bytes = sum(int(admin.memory_usage(k, samples=0) or 0) for k in keys)
    used = int(admin.info("memory")["used_memory"])
    return Sample(head, int(admin.xlen(f"dg:{{{STORE}}}:log")), store_bytes, used, head - archived)


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 120)
async def test_soak_redis_stays_flat_while_the_archive_keeps_up(
    pods: list[Pod], redis_url: str, archive_url: str
) -> None:
    """Appends at a steady rate for a while (25 s in CI, 5 minutes with DG_SOAK=1) with a hot
    window of 2,000 events: after the first window Redis holds about the window and its memory
    stays flat, the archive lag stays bounded, and at the end every event is readable, in order,
    and a subscriber that followed from earliest the whole time got each exactly once."""
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_ARCHIVE_URL=archive_url, **FAST)
    create_store(pod, {"hotRetention": {"maxEvents": 2000}})
    follower = Client(pod.ws_url, STORE)
    await follower.connect()
    await follower.subscribe("*", "earliest")
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    rate, size = 300, 10  # events per second, per request
    samples: list[Sample] = []

    async def appender() -> int:
        sent = 0
        started = asyncio.get_running_loop().time()
        async with httpx.AsyncClient(base_url=pod.url, timeout=10) as http:
            while (now := asyncio.get_running_loop().time()) - started < SOAK_SECONDS:
                due = int((now - started) * rate)
                while sent < due:
                    response = await http.post(
                        f"/event-stores/{STORE}/streams/s-{sent % 13}", json=batch(sent, size)
                    )
                    assert response.status_code == 201, response.text
                    sent += size
                await asyncio.sleep(0.02)
        return sent

    async def sampler() -> None:
        while True:
            await asyncio.sleep(1.0)
            samples.append(sample(admin))

    watcher = asyncio.create_task(sampler())
    try:
        total = await appender()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    wait_for(lambda: int(meta(redis_url).get("archived", 0)) == total, timeout=60, what="archived")
    settled = [s for s in samples if s.head > 4000]  # past the first window, with room to trim
    assert len(settled) >= 5, samples
    # Redis holds about the window: the newest 2,000 plus what one round can leave behind.
    assert max(s.entries for s in settled) <= 2000 + rate, settled
    # ... and its memory is flat: every key of the store (the log, the stream, type and time
    # indexes) ends no bigger than it was once the first window had passed, and so does the
    # whole Redis (looser: client buffers come and go).
    start, end = settled[:3], settled[-3:]
    store_start = max(s.store_bytes for s in start)
    assert max(s.store_bytes for s in end) <= store_start * 1.25 + 64 * 1024, settled
    used_start = max(s.used_memory for s in start)
    assert max(s.used_memory for s in end) <= used_start * 1.25 + 512 * 1024, settled
    # The archive keeps up: never more than a few seconds of appends behind.
    assert max(s.lag for s in settled) <= 5 * rate, settled
    assert all_events(pod) == list(range(1, total + 1))
    await follower.wait(lambda: len(follower.got.events) == total, timeout=60, what="follower")
    assert follower.got.positions == list(range(1, total + 1))
    await follower.disconnect()
