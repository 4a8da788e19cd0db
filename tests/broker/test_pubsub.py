"""The pub/sub listener on its lean connection (``broker.pubsub.LeanPubSub``, used on one Redis
server over plain TCP): messages in order, in bursts past its read buffer, across a killed
connection, with a password, and a peer that stops answering; and which clients get it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex

from broker import RedisConfig, connect
from broker.pubsub import LeanPubSub, Listener
from broker.redis import TRANSIENT, PlainServer, plain_server
from tests.broker.conftest import MuteServer


class Owner:
    """Records what its listener hands it; ``until`` waits for a condition, looked at again at
    each message and tick (every 0.2 s)."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str]] = []
        self.ticks = 0
        self.changed = asyncio.Event()

    async def announced(self, channel: str, data: str) -> None:
        self.heard.append((channel, data))
        self.changed.set()

    async def tick(self) -> None:
        self.ticks += 1
        self.changed.set()

    async def until(self, check: Callable[[], object], what: str) -> None:
        try:
            async with asyncio.timeout(10):
                while not check():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"not within 10 s: {what}") from None


@pytest.fixture
def client(real_redis: aioredis.Redis) -> aioredis.Redis:
    return real_redis


@pytest.fixture
async def listened(client: aioredis.Redis) -> AsyncIterator[tuple[Listener, Owner]]:
    owner = Owner()
    listener = Listener(client, owner, tick_interval=0.2, name="test listener")
    await listener.start()
    try:
        yield listener, owner
    finally:
        await listener.close()


def test_only_a_plain_server_gets_the_lean_connection() -> None:
    plain = plain_server(connect(RedisConfig(url="redis://u:pw@127.0.0.1:6390/2")))
    assert plain == PlainServer("127.0.0.1", 6390, "u", "pw", 5.0, db=2)
    assert plain_server(connect(RedisConfig(url=None))) is None  # fakeredis
    assert plain_server(connect(RedisConfig(url="rediss://127.0.0.1:6390/0"))) is None  # TLS
    assert plain_server(connect(RedisConfig(url="unix:///tmp/redis.sock"))) is None


async def test_messages_arrive_in_order_and_a_burst_past_the_buffer_is_whole(
    client: aioredis.Redis, listened: tuple[Listener, Owner], monkeypatch: pytest.MonkeyPatch
) -> None:
    listener, owner = listened
    assert isinstance(listener._pubsub, LeanPubSub)
    monkeypatch.setattr("broker.pubsub.MAX_BUFFERED", 20)  # it stops reading, then goes on
    await listener.subscribe("a", "b")
    await owner.until(lambda: listener.healthy, "healthy")
    await client.publish("a", "warm")
    await owner.until(lambda: owner.heard, "the first message")
    async with client.pipeline(transaction=False) as pipe:
        for i in range(2000):
            pipe.publish("a" if i % 2 else "b", f"m{i}")
        await pipe.execute()
    await owner.until(lambda: len(owner.heard) == 2001, "every message of the burst")
    assert owner.heard[1:] == [("a" if i % 2 else "b", f"m{i}") for i in range(2000)]
    await listener.unsubscribe("b")
    await client.publish("b", "not heard")
    await client.publish("a", "heard")
    await owner.until(lambda: owner.heard[-1] == ("a", "heard"), "a message after unsubscribing b")
    assert ("b", "not heard") not in owner.heard
    assert listener.channels == {"a"}


async def test_a_killed_connection_is_made_again_with_every_channel(
    client: aioredis.Redis, listened: tuple[Listener, Owner]
) -> None:
    listener, owner = listened
    await listener.subscribe("a", "b")
    await owner.until(lambda: listener.healthy, "healthy")
    assert await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
    await owner.until(lambda: listener.reconnects == 1, "the loss seen by the listener")
    ticks = owner.ticks
    await owner.until(
        lambda: owner.ticks > ticks, "a tick after the reconnect (the owner's repair)"
    )
    async with asyncio.timeout(10):  # subscribed again: a message on each channel comes through
        while not {("a", "x"), ("b", "y")} <= set(owner.heard):
            await client.publish("a", "x")
            await client.publish("b", "y")
            await asyncio.sleep(0.05)
    assert listener.healthy


async def test_a_password_is_sent_and_a_wrong_one_is_refused(
    client: aioredis.Redis, redis_url: str
) -> None:
    await client.execute_command("ACL", "SETUSER", "lean", "on", ">s3cret", "~*", "&*", "+@all")
    try:
        host_port = redis_url.split("//")[1].split("/")[0]
        good = connect(RedisConfig(url=f"redis://lean:s3cret@{host_port}/0"))
        owner = Owner()
        listener = Listener(good, owner, tick_interval=0.2, name="auth listener")
        await listener.start()
        try:
            await listener.subscribe("c")
            await owner.until(lambda: listener.healthy, "healthy")
            await client.publish("c", "hello")
            await owner.until(lambda: owner.heard == [("c", "hello")], "a message with a password")
        finally:
            await listener.close()
            await good.aclose()
        bad = LeanPubSub(PlainServer("127.0.0.1", int(host_port.split(":")[1]), "lean", "no", 5))
        with pytest.raises(rex.AuthenticationError, match="WRONGPASS"):  # (a TRANSIENT error)
            await bad.subscribe("c")
        await bad.aclose()
        assert issubclass(rex.AuthenticationError, TRANSIENT)  # the listener retries it, logged
    finally:
        await client.execute_command("ACL", "DELUSER", "lean")


async def test_a_peer_that_stops_answering_is_dropped(
    mute_server: MuteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts and then says nothing (a Redis gone without a word): the quiet
    connection is PINGed, and when no answer comes within the timeout it is given up."""
    monkeypatch.setattr("broker.pubsub.HEALTH_SECONDS", 0.2)
    pubsub = LeanPubSub(PlainServer("127.0.0.1", mute_server.port, None, None, 0.5))
    try:
        await pubsub.subscribe("c")
        with pytest.raises(ConnectionError, match=r"did not answer a PING within 0\.5 s"):
            async with asyncio.timeout(5):
                while True:
                    assert await pubsub.get_message(timeout=0.1) is None
    finally:
        await pubsub.aclose()
    (sent,) = mute_server.received
    assert sent == b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n*1\r\n$4\r\nPING\r\n"
