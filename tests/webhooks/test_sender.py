"""The dispatcher's HTTP side: a subscription's requests never go through a proxy named in the
environment (HTTP_PROXY / HTTPS_PROXY). The address check (tests/webhooks/test_targets.py) must
see the address actually connected to; through a proxy it would see the proxy's. Both the
receiver and the would-be proxy listen on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from broker import TargetPolicy
from broker.webhooks import WebhookConfig, new_secret, secret_key
from broker.webhooks.delivery import Sender, Target, body


class Counter:
    """A TCP server on 127.0.0.1 answering every request with ``status``; counts connections."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Counter:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            writer.write(f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()


async def test_the_proxy_in_the_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Counter(204) as receiver, Counter(502) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        sender = Sender(timeout=5, max_connections=2, targets=TargetPolicy.build("127.0.0.0/8"))
        config = WebhookConfig.build(event_filter="*", url=f"http://127.0.0.1:{receiver.port}/in")
        target = Target(sender, config, secret_key(new_secret()), max_in_flight=1)
        try:
            attempt = await sender.deliver(target, "e1", body({"subscriptionId": "s"}, "{}"))
        finally:
            await target.close()
            await sender.close()
        assert attempt.result == "success", attempt
        assert (receiver.connections, proxy.connections) == (1, 0)
