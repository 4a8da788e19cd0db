"""A pod on a Redis that may evict (``maxmemory-policy`` other than ``noeviction``) takes no writes:
every kind of append and a store's creation answer 503 naming the policy and its fix, as
``/readyz`` does, while reads go on; once the policy is safe, the next sample lets writes in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker import EventLog, NewEvent, RedisConfig, connect
from tests.conftest import need_binary
from tests.harness import Pod, RedisServer, wait_for

STORE = "evictable"
POLICY = "allkeys-lru"


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, started with an evicting policy."""
    server = RedisServer(
        need_binary("redis-server"), tmp_path, options=("--maxmemory-policy", POLICY)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def seed(url: str) -> None:
    """One store with one event, written past any pod (which would refuse it)."""
    client = connect(RedisConfig(url=url))
    try:
        await EventLog(client).append(STORE, "s-1", [NewEvent("a.b", {"i": 0})], auto_create=True)
    finally:
        await client.aclose()


def test_writes_answer_503_naming_the_policy_and_reads_go_on(
    pods: list[Pod], evicting_redis: RedisServer
) -> None:
    asyncio.run(seed(evicting_redis.url))
    pod = Pod({"DELTAGATE_REDIS_URL": evicting_redis.url, "DELTAGATE_AUTH": "disabled"})
    pods.append(pod)
    pod.start(wait_ready=False)
    wait_for(lambda: httpx.get(pod.url + "/healthz").status_code == 200, what="liveness")
    with httpx.Client(base_url=pod.url, timeout=10) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503
        problem = ready.json()["message"]
        assert f"maxmemory-policy {POLICY}" in problem
        assert "CONFIG SET maxmemory-policy noeviction" in problem

        one = {"events": [{"type": "a.b", "data": {"i": 1}}]}
        writes = {
            "stream append": (f"/event-stores/{STORE}/streams/s-1", one),
            "stream append (alias)": (f"/event-stores/{STORE}/streams/s-1/events", one),
            "multi-stream append": (
                f"/event-stores/{STORE}/streams",
                {"streams": [{"streamId": "s-2", **one}, {"streamId": "s-3", **one}]},
            ),
            "DCB append": (
                f"/event-stores/{STORE}/events",
                {"events": [{"type": "a.b", "data": {}, "tags": ["t:1"]}]},
            ),
            "store create": ("/event-stores", {"name": "another"}),
            "store create under /api": ("/api/event-stores", {"name": "another"}),
            "append under /api": (f"/api/event-stores/{STORE}/streams/s-1", one),
        }
        for what, (path, body) in writes.items():
            response = http.post(path, json=body)
            assert response.status_code == 503, (what, response.text)
            assert response.json() == {"error": "UNAVAILABLE", "message": problem}, what
            assert response.headers["Retry-After"] == "30", what

        # Reads go on, a POST that only reads (the DCB query) among them.
        events = http.get(f"/event-stores/{STORE}/events")
        assert events.status_code == 200, events.text
        assert [e["globalPosition"] for e in events.json()["events"]] == [1]
        assert http.get(f"/event-stores/{STORE}/streams/s-1").status_code == 200
        assert http.get(f"/event-stores/{STORE}").json()["statistics"]["headPosition"] == 1
        assert http.get("/event-stores").status_code == 200
        query = http.post(
            f"/event-stores/{STORE}/query", json={"query": {"items": [{"types": ["a.b"]}]}}
        )
        assert query.status_code == 200, query.text

        evicting_redis.client().config_set("maxmemory-policy", "noeviction")
        # The pod samples the policy every 5 s: writes come back within one interval or two.
        appended = wait_for(
            lambda: http.post(f"/event-stores/{STORE}/streams/s-1", json=one).status_code == 201,
            timeout=15,
            interval=0.2,
            what="appends accepted once the policy is noeviction",
        )
        assert appended
        assert http.post("/event-stores", json={"name": "another"}).status_code == 201
        assert http.get("/readyz").status_code == 200
        assert http.get(f"/event-stores/{STORE}").json()["statistics"]["headPosition"] == 2
    assert "Traceback" not in pod.log()
