"""Webhooks in the embedded dev mode (`make run`: no Redis URL): the pod delivers them itself."""

from __future__ import annotations

import time

import httpx

from tests.harness import Pod, wait_for
from tests.webhooks.support import Receiver

DEV = {"DELTAGATE_REDIS_URL": "", "DELTAGATE_AUTH": "disabled"}


def subscribe(pod: Pod, receiver: Receiver, store: str) -> str:
    assert httpx.post(f"{pod.url}/event-stores", json={"name": store}).status_code == 201
    body = {
        "eventFilter": "order.*",
        "subscriber": {"type": "webhook", "config": {"url": receiver.url}},
    }
    response = httpx.post(f"{pod.url}/event-stores/{store}/subscribe", json=body)
    assert response.status_code == 201, response.text
    sub_id: str = response.json()["subscriptionId"]
    receiver.secrets[sub_id] = response.json()["signingSecret"]
    return sub_id


def test_the_dev_pod_delivers_signed_webhooks_in_order(receivers) -> None:  # type: ignore[no-untyped-def]
    receiver = receivers().start()
    pod = Pod(DEV).start()
    try:
        sub_id = subscribe(pod, receiver, "shop")
        for n in range(5):
            events = [{"type": "order.placed", "data": {"n": n}}, {"type": "user.seen", "data": {}}]
            response = httpx.post(
                f"{pod.url}/event-stores/shop/streams/order-1", json={"events": events}
            )
            assert response.status_code == 201, response.text
        wait_for(lambda: len(receiver.of(sub_id)) == 5, timeout=10, what="5 webhook deliveries")
        got = [d.event for d in receiver.of(sub_id)]
        assert [e["data"]["n"] for e in got] == [0, 1, 2, 3, 4]
        assert {e["type"] for e in got} == {"order.placed"}  # the filter held
        assert receiver.bad_signatures == 0

        def progress() -> int:
            url = f"{pod.url}/event-stores/shop/subscriptions/{sub_id}"
            return int(httpx.get(url).json()["lastProcessedEventGlobalPosition"])

        wait_for(lambda: progress() >= 9, timeout=5, what="progress saved")
    finally:
        status = pod.stop()
    assert status == 0  # the dispatcher drained with the pod


def test_the_embedded_dispatcher_can_be_turned_off(receivers) -> None:  # type: ignore[no-untyped-def]
    receiver = receivers().start()
    pod = Pod({**DEV, "DELTAGATE_EMBEDDED_DISPATCHER": "false"}).start()
    try:
        subscribe(pod, receiver, "shop")
        events = [{"type": "order.placed", "data": {}}]
        response = httpx.post(f"{pod.url}/event-stores/shop/streams/o", json={"events": events})
        assert response.status_code == 201
        time.sleep(2.5)  # well over a dispatcher's poll interval: none shows up
        assert receiver.requests == 0
    finally:
        pod.stop()
