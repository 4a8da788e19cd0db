"""DELTAGATE_APPEND_WAIT_REPLICAS: an append is acknowledged only once that many replicas have
it; with too few replicas it answers 503 (written) and an idempotent retry confirms it."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import httpx

from tests.conftest import need_binary
from tests.harness import RedisServer, free_port, spawn_pods, wait_for


def test_wait_for_replicas(redis_server: RedisServer, redis_url, pods):
    binary = need_binary("redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dg-replica-") as tmp:
        replica = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(Path(tmp)),
                "--replicaof",
                "127.0.0.1",
                str(redis_server.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: (
                    redis_server.client().info("replication").get("slave0", {}).get("state")
                    == "online"
                ),
                timeout=20,
                what="the replica to be in sync",
            )
            one, two = (
                spawn_pods(pods, redis_url, 1, DELTAGATE_APPEND_WAIT_REPLICAS=str(n))[0]
                for n in (1, 2)
            )
            body = {"events": [{"type": "a.b", "data": {}}]}
            r = httpx.post(f"{one.url}/event-stores/rep/streams/s", json=body)
            assert r.status_code == 201, r.text
            r = httpx.post(
                f"{two.url}/event-stores/rep/streams/s",
                json=body,
                headers={"Idempotency-Key": "k1"},
            )
            assert r.status_code == 503, r.text
            assert r.json()["details"]["written"] is True
            assert r.json()["details"]["replicas"] == 1
            # The retry with the same key confirms the first write instead of doubling it.
            r = httpx.post(
                f"{one.url}/event-stores/rep/streams/s",
                json=body,
                headers={"Idempotency-Key": "k1"},
            )
            assert r.status_code == 201
            assert r.json()["globalPosition"] == 2
            stats = httpx.get(f"{one.url}/event-stores/rep").json()["statistics"]
            assert stats["totalEvents"] == 2
        finally:
            replica.terminate()
            replica.wait(10)
