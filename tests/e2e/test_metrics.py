"""Metrics scraped before and after a workload move by exactly the right amounts."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_streaming import STORE, append
from tests.e2e.wsclient import Client
from tests.harness import Pod, spawn_pods


def scrape(pod: Pod) -> dict[str, float]:
    text = httpx.get(pod.url + "/metrics").text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def moved(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def test_metrics_move_by_the_workload(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1)
    async with httpx.AsyncClient() as http:
        await append(http, pod, "warm", [{"type": "a.b", "data": {}}])
        before = scrape(pod)
        clients = []
        for flt in ("*", "order.*"):
            client = Client(pod.ws_url, STORE)
            await client.connect()
            await client.subscribe(flt)
            clients.append(client)
        during = scrape(pod)
        assert moved(before, during, "deltagate_ws_connections") == 2
        assert moved(before, during, "deltagate_ws_subscriptions") == 2
        for i in range(3):
            events = [
                {"type": "order.placed" if j < 4 else "user.seen", "data": {}} for j in range(10)
            ]
            await append(http, pod, f"s-{i}", events)
        await clients[0].wait(lambda: len(clients[0].got.events) == 30, what="30 events")
        await clients[1].wait(lambda: len(clients[1].got.events) == 12, what="12 events")
        bad = await http.post(f"{pod.url}/event-stores/{STORE}/streams/x", content=b"{")
        assert bad.status_code == 400
    await asyncio.sleep(0.2)
    after = scrape(pod)
    assert moved(before, after, "deltagate_events_appended_total") == 30
    assert moved(before, after, "deltagate_append_duration_seconds_count") == 3
    assert moved(before, after, "deltagate_events_delivered_total{mode=live}") == 42
    assert moved(before, after, "deltagate_delivery_latency_seconds_count") == 30
    assert after[f"deltagate_store_head_position{{store={STORE}}}"] == 31
    assert after["deltagate_pubsub_healthy"] == 1
    for client in clients:
        await client.disconnect()
    await asyncio.sleep(0.3)
    closed = scrape(pod)
    assert moved(before, closed, "deltagate_ws_connections") == 0
    assert moved(before, closed, "deltagate_ws_subscriptions") == 0
    assert moved(before, closed, "deltagate_ws_closes_total{code=1000}") == 2
