"""The same code on a 3-master Redis Cluster the test starts itself (redis-server in cluster
mode): stores spread over the shards by their hash tag, live fan-out over sharded pub/sub."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
LOOPBACK = {"DELTAGATE_REDIS_MODE": "cluster", "DELTAGATE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
"""Pods and dispatchers on the cluster that may deliver to the tests' receivers (127.0.0.1)."""


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


def hooked(pod: Any, store: str, receiver: Any) -> str:
    """A new store with a webhook subscription to ``receiver`` for every event: its id."""
    assert httpx.post(f"{pod.url}/event-stores", json={"name": store}).status_code == 201
    made = httpx.post(
        f"{pod.url}/event-stores/{store}/subscribe",
        json={
            "eventFilter": "*",
            "subscriber": {"type": "webhook", "config": {"url": receiver.url}},
        },
    )
    assert made.status_code == 201, made.text
    sub_id: str = made.json()["subscriptionId"]
    receiver.secrets[sub_id] = made.json()["signingSecret"]
    return sub_id


def test_a_dispatcher_on_the_cluster_hears_appends_without_waiting_for_its_poll(
    cluster, pods, redis_url
):
    """The dispatcher's doorbell (``broker.pubsub.Listener``) on shard channels: with the poll
    at a minute, a new event still arrives at once."""
    from tests.webhooks.support import DispatcherProcess, Receiver

    url = f"redis://127.0.0.1:{cluster[0]}/0"
    loopback = LOOPBACK
    (pod,) = spawn_pods(pods, url, 1, **loopback)
    receiver = Receiver().start()
    dispatcher = None
    try:
        store = "hooks-on-the-cluster"
        sub_id = hooked(pod, store, receiver)
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


def _owner(nodes: RedisCluster, key: str) -> str:
    return nodes.get_node_from_key(key).name  # type: ignore[no-any-return]


def _stores_on_every_shard(nodes: RedisCluster, prefix: str, count: int) -> list[str]:
    """``count`` store names per master (so that any test of them spans every shard)."""
    by_owner: dict[str, list[str]] = {}
    i = 0
    while len(by_owner) < len(nodes.get_primaries()) or min(map(len, by_owner.values())) < count:
        name = f"{prefix}-{i}"
        by_owner.setdefault(_owner(nodes, StoreKeys(name).channel), []).append(name)
        i += 1
    return [name for names in by_owner.values() for name in names[:count]]


async def test_live_events_from_every_shard_arrive_without_the_poll(cluster, pods, redis_url):
    """A pod listening to channels on several shards hears each at once: with the poll at a
    minute, only pub/sub can bring an event. (redis-py's Cluster pub/sub waited on its shards'
    connections in turn, its whole timeout each: an event on the second waited for the poll.)"""
    nodes = RedisCluster(host="127.0.0.1", port=cluster[0], decode_responses=True)
    stores = _stores_on_every_shard(nodes, "heard", 1)
    nodes.close()
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    (pod,) = spawn_pods(pods, url, 1, DELTAGATE_REDIS_MODE="cluster", DELTAGATE_POLL_INTERVAL="60")
    clients = {}
    for store in stores:
        clients[store] = client = Client(pod.ws_url, store)
        await client.connect()
        await client.subscribe("*", "latest")
    async with httpx.AsyncClient(timeout=10) as http:
        for round_ in range(3):
            for store in stores:
                r = await http.post(
                    f"{pod.url}/event-stores/{store}/streams/s",
                    json={"events": [{"type": "t.x", "data": {"round": round_}}]},
                )
                assert r.status_code == 201, r.text
                client = clients[store]
                await client.wait(lambda c=client, n=round_ + 1: len(c.got.events) >= n, 10, store)
    for client in clients.values():
        assert client.got.positions == [1, 2, 3]
        await client.disconnect()


async def test_a_migrated_slot_moves_the_live_channel_with_it(cluster, pods, redis_url):
    """Resharding moves a store's slot (its log and its shard channel) to another master:
    Redis unsubscribes the pod there, which subscribes again where the slot is now, and the
    store's next events arrive without the poll."""
    nodes = RedisCluster(host="127.0.0.1", port=cluster[0], decode_responses=True)
    store = "moving-shop"
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    (pod,) = spawn_pods(pods, url, 1, DELTAGATE_REDIS_MODE="cluster", DELTAGATE_POLL_INTERVAL="60")
    client = Client(pod.ws_url, store)
    await client.connect()
    await client.subscribe("*", "earliest")
    async with httpx.AsyncClient(timeout=10) as http:

        async def append(n: int) -> None:
            r = await http.post(
                f"{pod.url}/event-stores/{store}/streams/s",
                json={"events": [{"type": "t.x", "data": {"n": n}}]},
            )
            assert r.status_code == 201, r.text

        await append(1)
        await client.wait(lambda: len(client.got.events) == 1, 10, "before the move")
        channel = StoreKeys(store).channel
        slot = nodes.keyslot(channel)
        source = nodes.get_node_from_key(channel)
        target = next(n for n in nodes.get_primaries() if n.name != source.name)
        src = redis.Redis(host=source.host, port=source.port, decode_responses=True)
        dst = redis.Redis(host=target.host, port=target.port, decode_responses=True)
        src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        for node in nodes.get_primaries():
            redis.Redis(host=node.host, port=node.port).execute_command(
                "CLUSTER", "SETSLOT", slot, "NODE", dst_id
            )
        src.close()

        def listening_there() -> bool:
            _, count = dst.execute_command("PUBSUB", "SHARDNUMSUB", channel)
            return int(count) >= 1

        wait_for(listening_there, timeout=30, what="the pod on the channel's new master")
        dst.close()
        await append(2)
        await client.wait(lambda: len(client.got.events) == 2, 10, "after the move")
    assert client.got.positions == [1, 2]
    await client.disconnect()
    nodes.close()


async def test_an_evicting_policy_on_any_node_makes_pods_unready(cluster, pods, redis_url):
    """Not only the node the URL names: every node's maxmemory-policy counts."""
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    (pod,) = spawn_pods(pods, url, 1, DELTAGATE_REDIS_MODE="cluster")
    other = redis.Redis(host="127.0.0.1", port=cluster[2])
    other.config_set("maxmemory-policy", "allkeys-lru")
    try:

        def refused() -> bool:
            r = httpx.get(f"{pod.url}/readyz")
            return r.status_code == 503 and "allkeys-lru" in r.text

        wait_for(refused, timeout=20, what="the pod to refuse the evicting node")
    finally:
        other.config_set("maxmemory-policy", "noeviction")
        other.close()
    wait_for(
        lambda: httpx.get(f"{pod.url}/readyz").status_code == 200, timeout=20, what="ready again"
    )


def test_dispatchers_on_the_cluster_keep_their_leases_and_deliver_everything(
    cluster, pods, redis_url
):
    """Leases are renewed and progress saved together for several subscriptions: on a
    Cluster, whose pipelines refuse scripts, each goes to its own shard. (Renewals in a
    pipeline failed there: leases lapsed, deliveries stalled and repeated.)"""
    from tests.webhooks.support import DispatcherProcess, Receiver

    nodes = RedisCluster(host="127.0.0.1", port=cluster[0], decode_responses=True)
    stores = _stores_on_every_shard(nodes, "leased", 2)
    nodes.close()
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    loopback = LOOPBACK
    (pod,) = spawn_pods(pods, url, 1, **loopback)
    receiver = Receiver().start()
    dispatchers: list[DispatcherProcess] = []
    try:
        subs = {store: hooked(pod, store, receiver) for store in stores}
        lease = {**loopback, "DELTAGATE_DISPATCHER_LEASE_SECONDS": "1"}
        dispatchers = [DispatcherProcess(url, lease).start() for _ in range(2)]
        for n in range(20):  # over several lease periods
            for store in stores:
                r = httpx.post(
                    f"{pod.url}/event-stores/{store}/streams/s-{n % 3}",
                    json={"events": [{"type": "order.placed", "data": {"n": n}}]},
                )
                assert r.status_code == 201, r.text
            time.sleep(0.25)
        for store, sub_id in subs.items():
            wait_for(
                lambda s=sub_id: receiver.positions(s) == set(range(1, 21)),
                timeout=30,
                what=f"every event of {store}",
            )
        for dispatcher in dispatchers:
            assert "dispatcher error" not in dispatcher.log(), dispatcher.log()
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop(10)
        receiver.stop()
