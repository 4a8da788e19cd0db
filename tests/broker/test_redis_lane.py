"""``broker.redis.Lane``, the connection of our own that carries every append's script and the
dispatcher's progress saves on one Redis server over plain TCP: concurrent calls each get their
own reply, Redis' errors are redis-py's, a script Redis lost is loaded again, and a killed or
silent connection fails its calls as a lost Redis (then the next call connects again)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import hiredis
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex

from broker import EventLog, NewEvent, RedisConfig, StoreAdmin, Unavailable, connect
from broker.redis import TRANSIENT, Lane, PlainServer, bulk_lane, call, lane, load_script
from tests.broker.conftest import MuteServer
from tests.conftest import need_binary
from tests.harness import RedisServer


@pytest.fixture
def client(real_redis: aioredis.Redis) -> aioredis.Redis:
    return real_redis


def the_lane(client: aioredis.Redis) -> Lane:
    found = lane(client)
    assert found is not None
    assert lane(client) is found  # one per client
    return found


def test_only_a_plain_server_has_a_lane() -> None:
    for url in (None, "rediss://127.0.0.1:6390/0"):  # fakeredis (the embedded dev mode), TLS
        assert lane(connect(RedisConfig(url=url))) is None
        assert bulk_lane(connect(RedisConfig(url=url))) is None


def test_a_url_keeps_the_connection_it_names() -> None:
    """TLS and Unix sockets stay what the URL says; only plain TCP gets the packing connection
    (redis-py 8.2 let a connection class passed beside the URL replace the URL's: rediss://
    connected without TLS)."""
    classes = {
        url: connect(RedisConfig(url=url)).connection_pool.connection_class
        for url in ("rediss://127.0.0.1:6390/0", "unix:///tmp/redis.sock", "redis://127.0.0.1:6390")
    }
    assert issubclass(classes["rediss://127.0.0.1:6390/0"], aioredis.SSLConnection)
    assert issubclass(classes["unix:///tmp/redis.sock"], aioredis.UnixDomainSocketConnection)
    assert classes["redis://127.0.0.1:6390"].__name__ == "_HiredisPackedConnection"


async def test_a_unix_socket_url_serves_the_log(tmp_path: Path) -> None:
    """``unix://`` reaches a real redis-server over its socket: an append and its read go
    through (the pool once passed TCP's keepalive option, which a Unix connection refuses)."""
    sock = tmp_path / "redis.sock"
    server = RedisServer(need_binary("redis-server"), tmp_path, options=("--unixsocket", str(sock)))
    server.start()
    client = connect(RedisConfig(url=f"unix://{sock}?db=3"))
    try:
        await StoreAdmin(client).create("orders")
        log = EventLog(client)
        await log.append("orders", "order-1", [NewEvent("order.placed", {"n": 1})])
        (event,) = await log.read_after("orders", 0, 10)
        assert event.global_position == 1 and event.type == "order.placed"
        assert await client.client_info() and (await client.client_info())["db"] == 3
    finally:
        await client.aclose()
        server.stop()


async def test_the_bulk_lane_is_a_connection_of_its_own_whose_replies_stay_bytes(
    redis_url: str,
) -> None:
    """The lifecycle's reads of the log go over ``bulk_lane``: not the appends' connection, and
    nothing decoded; both close with the client."""
    client = connect(RedisConfig(url=redis_url))
    try:
        bulk = bulk_lane(client)
        assert bulk is not None and bulk_lane(client) is bulk  # one per client
        assert await bulk.execute("ECHO", "héllo") == "héllo".encode()
        assert await the_lane(client).execute("ECHO", "héllo") == "héllo"
        ids = {await bulk.execute("CLIENT", "ID"), await the_lane(client).execute("CLIENT", "ID")}
        assert len(ids) == 2
    finally:
        await client.aclose()
    assert client.lane is None and client.bulk is None  # type: ignore[attr-defined]
    listed = connect(RedisConfig(url=redis_url))
    try:
        for _ in range(50):  # (Redis sees a close a moment later)
            alive = {int(c["id"]) for c in await listed.client_list()}
            if not ids & alive:
                break
            await asyncio.sleep(0.02)
    finally:
        await listed.aclose()
    assert not ids & alive  # both closed


async def test_concurrent_calls_each_get_their_own_reply(client: aioredis.Redis) -> None:
    fast = the_lane(client)
    replies = await asyncio.gather(*(fast.execute("INCRBY", f"k{i % 7}", i) for i in range(700)))
    expected: dict[str, int] = {}
    for i, reply in enumerate(replies):
        expected[f"k{i % 7}"] = expected.get(f"k{i % 7}", 0) + i
        assert reply == expected[f"k{i % 7}"]
    assert await fast.execute("ECHO", "héllo") == "héllo"  # decoded as connect()'s clients do


async def test_the_urls_database_is_the_lanes(redis_url: str) -> None:
    """``redis://host:port/3``: what the Lane writes is in database 3, where the client reads."""
    in_three = connect(RedisConfig(url=redis_url.rsplit("/", 1)[0] + "/3"))
    try:
        await the_lane(in_three).execute("SET", "where", "three")
        assert await in_three.get("where") == "three"
        await in_three.delete("where")
        await StoreAdmin(in_three).create("orders")
        await EventLog(in_three).append("orders", "o-1", [NewEvent("a.b", {})])
        assert len(await EventLog(in_three).read_after("orders", 0, 10)) == 1
    finally:
        await in_three.flushdb()
        await in_three.aclose()


async def test_errors_are_redis_pys(client: aioredis.Redis) -> None:
    fast = the_lane(client)
    await client.set("text", "x")
    with pytest.raises(rex.ResponseError, match="not an integer"):
        await fast.execute("INCR", "text")
    assert await fast.execute("INCR", "n") == 1  # the connection goes on
    with pytest.raises(rex.DataError):  # refused before anything is sent, as redis-py does
        await fast.execute("SET", "k", None)
    assert await fast.execute("INCR", "n") == 2
    await client.config_set("maxmemory", "1")
    try:
        with pytest.raises(Exception, match="maxmemory") as full:
            await call(fast.execute("SET", "big", "y" * 1000))
        assert full.type.__name__ == "StorageFull"  # broker.redis.call's mapping, as before
    finally:
        await client.config_set("maxmemory", "0")


async def test_a_script_redis_lost_is_loaded_again(client: aioredis.Redis) -> None:
    await StoreAdmin(client).create("orders")
    log = EventLog(client)
    await log.append("orders", "o-1", [NewEvent("a.b", {"n": 1})])
    await client.script_flush()
    result = await log.append("orders", "o-1", [NewEvent("a.b", {"n": 2})])
    assert (result.first_position, result.stream_version) == (2, 2)
    script = load_script(client, "append", "write")
    assert (await client.script_exists(script.sha)) == [True]


async def test_a_killed_connection_fails_as_unavailable_then_connects_again(
    client: aioredis.Redis,
) -> None:
    fast = the_lane(client)
    mine = await fast.execute("CLIENT", "ID")
    blocked = asyncio.ensure_future(call(fast.execute("BLPOP", "nothing", 5)))
    await asyncio.sleep(0.1)
    assert await client.client_kill_filter(_id=mine) == 1
    with pytest.raises(Unavailable):
        await blocked
    assert await fast.execute("CLIENT", "ID") != mine  # a new connection
    assert await fast.execute("PING") == "PONG"


async def test_a_silent_server_times_out_and_the_connection_is_dropped(
    mute_server: MuteServer,
) -> None:
    fast = Lane(PlainServer("127.0.0.1", mute_server.port, None, None, 0.3))
    try:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await fast.execute("PING")
        assert issubclass(TimeoutError, TRANSIENT)  # call() makes it Unavailable
    finally:
        await fast.aclose()
    assert len(mute_server.received) == 2  # the first connection was dropped after its timeout


async def test_a_quiet_connection_is_pinged_and_a_dead_one_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer gone without a word while the connection was idle (a dropped NAT entry): the call
    after the quiet spell first PINGs, gets no answer, and goes out on a new connection instead
    of waiting out its own timeout. The fake server answers every command of every connection
    but the first, which falls silent after its first answer."""
    monkeypatch.setattr("broker.redis.HEALTH_SECONDS", 0.2)
    heard: list[list[bytes]] = []
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        index, parser = len(heard), hiredis.Reader()
        heard.append([])
        try:
            while data := await reader.read(1000):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    heard[index].append(command[0])
                    if index > 0 or len(heard[index]) == 1:
                        writer.write(b"+OK\r\n")
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    fast = Lane(PlainServer("127.0.0.1", server.sockets[0].getsockname()[1], None, None, 0.5))
    try:
        assert await fast.execute("SET", "a", "1") == "OK"
        await asyncio.sleep(0.3)  # quiet for longer than HEALTH_SECONDS
        try:
            assert await fast.execute("SET", "a", "2") == "OK"
        except TimeoutError:
            pytest.fail("the call after the quiet spell waited on the dead connection")
    finally:
        await fast.aclose()
        await asyncio.wait_for(asyncio.gather(*handlers), 5)  # each sees its client close
        server.close()
        await server.wait_closed()
    assert heard == [[b"SET", b"PING"], [b"SET"]]
