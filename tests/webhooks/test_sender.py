"""The dispatcher's HTTP side: a subscription's requests never go through a proxy named in the
environment (HTTP_PROXY / HTTPS_PROXY). The address check (tests/webhooks/test_targets.py) must
see the address actually connected to; through a proxy it would see the proxy's. Both the
receiver and the would-be proxy listen on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from broker import TargetPolicy
from broker.webhooks import WebhookConfig, new_secret, secret_key
from broker.webhooks.delivery import Envelope, Sender, Target
from tests.webhooks.servers import Listening, read_request, status_line


def answering(status: int) -> Listening:
    """A server on 127.0.0.1 answering every request with ``status``; counts connections."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(status_line(status))
        await writer.drain()

    return Listening(handle)


async def test_the_proxy_in_the_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    async with answering(204) as receiver, answering(502) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        sender = Sender(timeout=5, max_connections=2, targets=TargetPolicy.build("127.0.0.0/8"))
        config = WebhookConfig.build(event_filter="*", url=f"http://127.0.0.1:{receiver.port}/in")
        target = Target(sender, config, secret_key(new_secret()), max_in_flight=1)
        try:
            attempt = await sender.deliver(
                target, "e1", Envelope({"subscriptionId": "s"}).body("{}")
            )
        finally:
            await target.close()
        assert attempt.result == "success", attempt
        assert (receiver.connections, proxy.connections) == (1, 0)


async def test_a_replica_never_has_more_requests_open_than_its_max_connections() -> None:
    """Each target has a pool of its own; ``max_connections`` caps the replica's requests
    across them all, and a delivery cancelled while it waits for a slot takes none."""
    open_now = most = 0
    release, two_open = asyncio.Event(), asyncio.Event()

    async def holds(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, most
        while True:
            await read_request(reader)
            open_now += 1
            most = max(most, open_now)
            if open_now == 2:
                two_open.set()
            await release.wait()
            open_now -= 1
            writer.write(status_line(204))
            await writer.drain()

    async with Listening(holds) as receiver:
        sender = Sender(timeout=10, max_connections=2, targets=TargetPolicy.build("127.0.0.0/8"))
        targets = [
            Target(
                sender,
                WebhookConfig.build(event_filter="*", url=f"http://127.0.0.1:{receiver.port}/{i}"),
                secret_key(new_secret()),
                max_in_flight=4,
            )
            for i in range(5)
        ]
        body = Envelope({}).body("{}")
        try:
            sends = [
                asyncio.create_task(sender.deliver(target, f"e{i}", body))
                for i, target in enumerate(targets)
            ]
            await asyncio.wait_for(two_open.wait(), 10)
            await asyncio.sleep(0.1)  # (time for a third to arrive, were it let through)
            assert open_now == 2
            sends[4].cancel()  # waiting for a slot
            release.set()
            attempts = await asyncio.wait_for(asyncio.gather(*sends[:4]), 10)
            assert [a.result for a in attempts] == ["success"] * 4
            assert sends[4].cancelled()
            assert most == 2
            again = await asyncio.wait_for(
                asyncio.gather(*(sender.deliver(t, "x", body) for t in targets[:2])), 10
            )
            assert [a.result for a in again] == ["success"] * 2
        finally:
            for target in targets:
                await target.close()
