"""The same code on a 3-master Redis Cluster the test starts itself (redis-server in cluster
mode): stores spread over the shards by their hash tag, live fan-out over sharded pub/sub."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from broker import Filter
from broker.keys import StoreKeys
from tests.conftest import need_binary
from tests.e2e.wsclient import Client
from tests.harness import spawn_pods, wait_for

STORES = [f"shop-{i}" for i in range(12)]


def cluster_ports(n: int) -> list[int]:
    """Ports whose cluster bus port (+10000) is valid and free too."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20000, 30000)
        if port not in ports and all(port_free(p) for p in (port, port + 10000)):
            ports.append(port)
    return ports


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[int]]:
    binary = need_binary("redis-server")
    cli = need_binary("redis-cli")
    ports = cluster_ports(3)
    procs = []
    with tempfile.TemporaryDirectory(prefix="dg-cluster-") as tmp:
        for port in ports:
            node_dir = Path(tmp) / str(port)
            node_dir.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--dir",
                        str(node_dir),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--loglevel",
                        "warning",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in ports:
            wait_for(
                lambda p=port: redis.Redis(host="127.0.0.1", port=p).ping(), what="cluster node"
            )
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for(
            lambda: (
                redis.Redis(host="127.0.0.1", port=ports[0]).cluster("info")["cluster_state"]
                == "ok"
            ),
            timeout=20,
            what="cluster state ok",
        )
        try:
            yield ports
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)


async def test_stores_spread_over_shards_and_fan_out_in_order(cluster, pods, redis_url):
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    spawned = spawn_pods(
        pods, url, 2, DELTAGATE_REDIS_MODE="cluster", DELTAGATE_POLL_INTERVAL="0.5"
    )
    clients = []
    for store in STORES[:4]:
        for pod in spawned:
            client = Client(pod.ws_url, store)
            await client.connect()
            await client.subscribe("order.*", "earliest")
            clients.append((store, client))
    async with httpx.AsyncClient(timeout=10) as http:

        async def write(store: str) -> None:
            for i in range(30):
                events = [
                    {"type": "order.placed" if j % 2 else "user.seen", "data": {"i": i}}
                    for j in range(5)
                ]
                r = await http.post(
                    f"{spawned[i % 2].url}/event-stores/{store}/streams/s-{i}",
                    json={"events": events},
                )
                assert r.status_code == 201, r.text

        await asyncio.gather(*(write(store) for store in STORES))
    nodes = RedisCluster(host="127.0.0.1", port=cluster[0], decode_responses=True)
    owners = {nodes.get_node_from_key(f"dg:{{{store}}}:log").name for store in STORES}
    assert len(owners) > 1, "every store landed on one shard"
    for store in STORES:
        assert nodes.xlen(f"dg:{{{store}}}:log") == 150
    flt = Filter.parse("order.*")
    for store, client in clients:
        entries = nodes.xrange(f"dg:{{{store}}}:log", "-", "+")
        want = [int(i.split("-")[0]) for i, f in entries if flt.matches(f["s"], f["t"])]
        await client.wait(lambda c=client, w=want: len(c.got.events) >= len(w), what=store)
        await asyncio.sleep(0.1)
        assert client.got.positions == want
        await client.disconnect()
    nodes.close()


def test_a_dispatcher_on_the_cluster_hears_appends_without_waiting_for_its_poll(
    cluster, pods, redis_url
):
    """The dispatcher's doorbell (``broker.pubsub.Listener``) on shard channels: with the poll
    at a minute, a new event still arrives at once."""
    from tests.webhooks.support import DispatcherProcess, Receiver

    url = f"redis://127.0.0.1:{cluster[0]}/0"
    loopback = {
        "DELTAGATE_REDIS_MODE": "cluster",
        "DELTAGATE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    (pod,) = spawn_pods(pods, url, 1, **loopback)
    receiver = Receiver().start()
    dispatcher = None
    try:
        store = "hooks-on-the-cluster"
        assert httpx.post(f"{pod.url}/event-stores", json={"name": store}).status_code == 201
        made = httpx.post(
            f"{pod.url}/event-stores/{store}/subscribe",
            json={
                "eventFilter": "*",
                "subscriber": {"type": "webhook", "config": {"url": receiver.url}},
            },
        )
        assert made.status_code == 201, made.text
        sub_id = made.json()["subscriptionId"]
        receiver.secrets[sub_id] = made.json()["signingSecret"]
        dispatcher = DispatcherProcess(url, {**loopback, "DELTAGATE_POLL_INTERVAL": "60"}).start()

        def append(n: int) -> None:
            response = httpx.post(
                f"{pod.url}/event-stores/{store}/streams/s-1",
                json={"events": [{"type": "order.placed", "data": {"n": n}}]},
            )
            assert response.status_code == 201, response.text

        # Once the dispatcher listens to the store's shard channel, an append rings through.
        channel = StoreKeys(store).channel
        nodes = RedisCluster(host="127.0.0.1", port=cluster[0], decode_responses=True)
        owner = nodes.get_node_from_key(channel)
        nodes.close()
        node = redis.Redis(host=owner.host, port=owner.port)

        def listening() -> bool:
            _, count = node.execute_command("PUBSUB", "SHARDNUMSUB", channel)
            return int(count) >= 1

        wait_for(listening, timeout=30, what="the dispatcher on the store's shard channel")
        node.close()
        append(1)  # the worker's next poll is a minute away: only the doorbell brings it soon
        wait_for(lambda: receiver.positions(sub_id) == {1}, timeout=10, what="rung through")
        assert receiver.bad_signatures == 0
    finally:
        if dispatcher is not None:
            dispatcher.stop(10)
        receiver.stop()
