"""The one place that opens connections to Redis, decides what kind of Redis it is (one server or a
Cluster), and turns its failures into broker errors.

Clients made by ``connect`` return log entries (XRANGE, XREVRANGE) as Redis sends them, as lists:
replays read them by the thousand, and redis-py's conversion of each entry into a tuple and a dict
cost 12% of a replay's CPU. ``EventLog`` refuses a client that does not."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis._parsers.base import BaseParser
from redis.asyncio.connection import parse_url
from redis.connection import HiredisRespSerializer
from redis.maint_notifications import MaintNotificationsConfig
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

from .aio import expire
from .errors import RedisRefused, StorageFull, Unavailable

log = logging.getLogger("deltagate.redis")
T = TypeVar("T")
P = TypeVar("P", bound="PlainConnection")

HEALTH_SECONDS = 10.0
"""A connection of our own (``Lane``, ``pubsub.LeanPubSub``) quiet this long is PINGed before it
is used again, as redis-py does (``health_check_interval``, which ``connect`` sets to this)."""


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str | None = None
    """None: an embedded in-process fakeredis (dev only)."""
    mode: Literal["standalone", "cluster"] = "standalone"
    timeout: float = 5.0
    max_connections: int = 200

    @property
    def embedded(self) -> bool:
        return self.url is None


class _HiredisPackedConnection(aioredis.Connection):
    """redis-py's asyncio connection packs commands in Python (about 1.5 us per argument for an
    append's event bodies); hiredis packs them in C, as redis-py's sync client already does.

    A one-word command goes to hiredis as it is: redis-py's serializer first copies every
    argument through a generator to turn bytearrays and memoryviews into bytes (0.3 us per
    appended event, py-spy), which an append never passes. Anything hiredis refuses, and
    commands of two words ("SCRIPT LOAD"), take the serializer's way."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str) and " " not in head:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        return self._packer.pack(*args)


RAW_COMMANDS = ("XRANGE", "XREVRANGE")


def connect(config: RedisConfig) -> aioredis.Redis:
    """A client with a connection pool, hiredis parsing, timeouts on every call, and log entries
    returned raw (see the module's docstring)."""
    client = _client(config)
    for command in RAW_COMMANDS:
        client.set_response_callback(command, raw_entries)
    return client


def raw_entries(response: Any, **_: Any) -> Any:
    return response or []


def returns_raw_entries(client: Any) -> bool:
    return all(client.response_callbacks.get(c) is raw_entries for c in RAW_COMMANDS)


def sharded(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster. There a store's live channel is a shard
    channel (SPUBLISH, SSUBSCRIBE), so it lives on the store's own shard; on one server it is a
    plain channel. Decided here, from the client, and nowhere else."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _client(config: RedisConfig) -> aioredis.Redis:
    if config.url is None:
        import fakeredis

        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    if config.mode == "cluster":
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(  # type: ignore[return-value]
            config.url,
            decode_responses=True,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
        )
    # Our packing connection only for plain TCP: a rediss:// or unix:// URL keeps the class it
    # names (redis-py 8.2's from_url lets a connection_class argument override the URL's, which
    # turned TLS off without a word).
    named = parse_url(config.url).get("connection_class")
    by_scheme: dict[str, Any] = {}
    if named is None and HIREDIS_AVAILABLE:
        by_scheme["connection_class"] = _HiredisPackedConnection
    if named is not aioredis.UnixDomainSocketConnection:
        by_scheme["socket_keepalive"] = True  # (TCP's: a Unix socket's connection refuses it)
    # A blocking pool: a burst (a reconnect storm) waits up to the timeout for a connection
    # instead of failing at once when the pool is exhausted.
    pool = _Pool.from_url(
        config.url,
        **by_scheme,
        decode_responses=True,
        socket_timeout=config.timeout,
        socket_connect_timeout=config.timeout,
        health_check_interval=HEALTH_SECONDS,
        max_connections=config.max_connections,
        timeout=config.timeout,
        # Off, as they are on a plain Redis: "auto" (redis-py's default) also skips the pool's
        # check that a connection it hands out is still open, so after a Redis restart every
        # pooled connection failed one call (a 503 on a ready pod) before it was replaced.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return _Client.from_pool(pool)


class _Pool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, closed for good by ``aclose()`` (which the client's ``aclose``
    calls): a connection still being made or used then is closed as it comes back, and a call
    after it fails (ConnectionError, so ``Unavailable`` to the broker's callers). redis-py's own
    pool connects again in both cases, and nothing ever closes those sockets: calls racing a
    client's close (a task finishing during a shutdown) left them open, and CI saw one as an
    "unclosed Connection" ResourceWarning in a later test."""

    _closed = False

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise rex.ConnectionError("the Redis client is closed")
        return await super().get_connection(*args, **kwargs)

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        if self._closed:
            await connection.disconnect()

    async def aclose(self) -> None:
        self._closed = True
        await super().aclose()


class _Client(aioredis.Redis):
    """redis-py's client, with the ``Lane``s beside it (made at their first use, ``lane`` and
    ``bulk_lane``) closed with it."""

    lane: Lane | None = None
    bulk: Lane | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        lanes, self.lane, self.bulk = (self.lane, self.bulk), None, None
        for lane in lanes:
            if lane is not None:
                await lane.aclose()
        await super().aclose(close_connection_pool)


@dataclass(frozen=True, slots=True)
class PlainServer:
    """How to reach one Redis server over plain TCP, as a client made by ``connect`` does."""

    host: str
    port: int
    username: str | None
    password: str | None
    timeout: float
    db: int = 0
    """The database of the URL's path (``redis://host:6379/2``): selected on every connection."""


def plain_server(client: Any) -> PlainServer | None:
    """Where ``client`` (made by ``connect``) connects, if it is one Redis server over plain TCP
    with a password at most (None for anything else: fakeredis, a Cluster, TLS, a Unix socket,
    a credential provider): what a connection of our own may copy (``pubsub.LeanPubSub``)."""
    pool = getattr(client, "connection_pool", None)
    if not HIREDIS_AVAILABLE or not isinstance(client, _Client) or pool is None:
        return None
    if pool.connection_class not in (_HiredisPackedConnection, aioredis.Connection):
        return None
    kwargs = pool.connection_kwargs
    if kwargs.get("credential_provider") is not None:
        return None
    return PlainServer(
        host=kwargs.get("host", "localhost"),
        port=int(kwargs.get("port", 6379)),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        timeout=float(kwargs.get("socket_connect_timeout") or 5.0),
        db=int(kwargs.get("db") or 0),
    )


def cluster_server(client: Any) -> PlainServer | None:
    """How to reach a node of ``client``'s Redis Cluster over plain TCP (give it the node's
    ``host`` and ``port`` with ``dataclasses.replace``), as ``plain_server`` does for one server;
    None when ``client`` is no Cluster client or its nodes need more (TLS, a credential
    provider)."""
    if not HIREDIS_AVAILABLE or not sharded(client):
        return None
    kwargs = client.connection_kwargs
    if kwargs.get("credential_provider") is not None:
        return None
    if kwargs.get("connection_class", aioredis.Connection) is not aioredis.Connection:
        return None  # (SSLConnection)
    return PlainServer(
        host="",
        port=0,
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        timeout=float(kwargs.get("socket_connect_timeout") or 5.0),
    )


class PlainConnection(asyncio.Protocol):
    """A connection of our own to one Redis server (``open_plain``): its transport, whether it
    is open, when it last heard from Redis and why it ended. A subclass parses what comes
    (``data_received``) and answers ``request`` (the next reply: the handshake's AUTH and
    SELECT)."""

    what = "Redis connection"
    """How the log and the errors name it."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.open = False
        self.lost_because = f"the {self.what} was closed"
        self.heard = 0.0
        self.loop = asyncio.get_running_loop()
        """The loop it runs on, asked once: on Python 3.11 every ``asyncio.get_running_loop()``
        is a ``getpid`` system call (CPython gh-100363, gone in 3.12), and a Redis call asked
        for it five times (strace of a dispatcher: 2.9 ``getpid`` per delivery)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.open = True
        self.heard = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if exc is not None:
            self.lost_because = f"the {self.what} was lost: {exc!r}"

    async def request(self, *command: Any) -> Any:
        raise NotImplementedError

    def drop(self, why: str) -> None:
        """Give the connection up now (``connection_lost`` follows), saying why."""
        self.lost_because = why
        log.warning(f"{self.what} dropped", extra={"error": why})
        self.open = False
        self.transport.abort()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


async def open_plain(server: PlainServer, factory: Callable[[], P]) -> P:
    """A connection of our own to ``server`` (``plain_server``): TCP with keepalive, AUTH when it
    has a password, SELECT when its database is not 0. ``factory`` makes its protocol."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(server.timeout):
        _, conn = await loop.create_connection(factory, server.host, server.port)
        try:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if server.password is not None:
                auth = (server.username, server.password) if server.username else (server.password,)
                answer = await conn.request("AUTH", *auth)
                if isinstance(answer, hiredis.ReplyError):
                    raise rex.AuthenticationError(str(answer))
            if server.db:
                answer = await conn.request("SELECT", server.db)
                if isinstance(answer, hiredis.ReplyError):
                    raise rex.ConnectionError(f"SELECT {server.db}: {answer}")
        except BaseException:
            conn.close()
            raise
    return conn


class Lane:
    """The hottest calls (every append's script, the dispatcher's progress saves) on one
    connection of our own to one Redis server over plain TCP (``plain_server``): commands
    pipelined (those of one turn of the loop in one write), replies parsed by hiredis and matched
    in order, errors as redis-py raises them. redis-py costs ~100 us of CPU per call more on the
    bench host (a sequential PING: ~120-145 us against ~25 us over a bare socket; its pool's
    lock, its retry and observability wrappers, a timeout per read). Measured with it and
    without (``bench/run.py --only append``, alternating): an HTTP append of one event cost its
    pod 328-335 us of CPU against 463 us.

    A lost connection fails the calls on it (ConnectionError, TRANSIENT) and the next call
    connects again; a call without an answer within the timeout drops the connection, as
    redis-py does (its other calls cannot be told apart from it). Replies are decoded as the
    clients of ``connect`` decode them (UTF-8), or not at all (``decode=False``: bytes, for
    ``bulk_lane``). Calls share one connection, so none may block (BLPOP, XREAD BLOCK, WAIT):
    every call behind it would wait too."""

    def __init__(self, server: PlainServer, *, decode: bool = True) -> None:
        self._server = server
        self._decode = decode
        self._conn: _LaneConnection | None = None
        self._connecting = asyncio.Lock()

    async def execute(self, *command: Any) -> Any:
        conn = self._conn
        if conn is None or not conn.open or conn.quiet():
            conn = await self._connected()
        answer = conn.send(command)
        # One timer on the answer, not an ``asyncio.timeout`` per call (a context, the current
        # task and the loop asked for twice: a third of a Redis call's Python here).
        timer = conn.loop.call_later(self._server.timeout, expire, answer)
        try:
            reply = await answer
        except TimeoutError:
            conn.drop(f"Redis did not answer within {self._server.timeout:g} s")
            raise
        finally:
            timer.cancel()
        if isinstance(reply, hiredis.ReplyError):
            raise BaseParser.parse_error(str(reply))
        return reply

    async def _connected(self) -> _LaneConnection:
        """The connection, made again if it was lost; one quiet for ``HEALTH_SECONDS`` is PINGed
        first and given up without an answer in time (a peer gone without a word), as redis-py
        checks a pooled connection (``health_check_interval``) before it uses it."""
        async with self._connecting:
            conn = self._conn
            if conn is not None and conn.open and conn.quiet():
                try:
                    async with asyncio.timeout(self._server.timeout):
                        await conn.request("PING")
                except (TimeoutError, rex.ConnectionError):
                    conn.drop(f"no answer to a PING within {self._server.timeout:g} s")
            if conn is None or not conn.open:
                conn = self._conn = await open_plain(
                    self._server, lambda: _LaneConnection(self._decode)
                )
            return conn

    async def run_script(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``script`` (``load_script``) by its SHA; when Redis lost it (a restart), through
        redis-py, which loads it again."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            return await script(keys=keys, args=args)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _LaneConnection(PlainConnection):
    def __init__(self, decode: bool = True) -> None:
        super().__init__()
        self._reader = hiredis.Reader(encoding="utf-8") if decode else hiredis.Reader()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._out: list[bytes] = []

    def quiet(self) -> bool:
        """Nothing asked and nothing heard for ``HEALTH_SECONDS``."""
        return not self._waiting and self.loop.time() - self.heard > HEALTH_SECONDS

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        waiting, self._waiting = self._waiting, deque()
        for answer in waiting:
            if not answer.done():
                answer.set_exception(rex.ConnectionError(self.lost_because))

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        reader.feed(data)
        self.heard = self.loop.time()
        try:
            while (reply := reader.gets()) is not False:
                answer = waiting.popleft()
                if not answer.done():  # (its caller gave up: cancelled)
                    answer.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self.drop(f"not a Redis reply: {exc!r}")

    def send(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        try:
            packed = hiredis.pack_command(command)
        except TypeError as exc:  # (None, a bool...: what redis-py refuses too, as DataError)
            raise rex.DataError(str(exc)) from None
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(packed)
        answer: asyncio.Future[Any] = self.loop.create_future()
        self._waiting.append(answer)
        return answer

    async def request(self, *command: Any) -> Any:
        return await self.send(command)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.open:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])


async def run_script(client: Any, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Run ``script`` (``load_script``) on ``client``: through its ``Lane`` when it has one
    (``lane``), else through redis-py (which loads the script if Redis lost it)."""
    fast = lane(client)
    if fast is not None:
        return await fast.run_script(script, keys, args)
    return await script(keys=keys, args=args)


def lane(client: Any) -> Lane | None:
    """The ``Lane`` beside ``client`` (one per client, closed with it) when it is one Redis
    server over plain TCP; None for anything else."""
    if isinstance(client, _Client) and client.lane is not None:
        return client.lane
    server = plain_server(client)
    if server is None:
        return None
    client.lane = Lane(server)
    return client.lane


def bulk_lane(client: Any) -> Lane | None:
    """A second ``Lane`` beside ``client`` (one per client, closed with it), whose replies stay
    bytes, for reads of thousands of entries at once (the lifecycle's, ``archiver.log_entries``):
    not ``lane``'s connection, which carries every append, so a page's megabytes never hold an
    append behind them. None where ``lane`` is None. As on ``lane``, a reply must come whole
    within the client's timeout (``DELTAGATE_REDIS_TIMEOUT``, 5 s), where redis-py bounded each
    read: a page of 8 MiB (``LifecycleOptions.copy_bytes``) in 5 s needs 13 Mbit/s."""
    if isinstance(client, _Client) and client.bulk is not None:
        return client.bulk
    server = plain_server(client)
    if server is None:
        return None
    client.bulk = Lane(server, decode=False)
    return client.bulk


TRANSIENT = (
    rex.ConnectionError,
    rex.TimeoutError,
    # A Cluster client that reached no node at all (redis-py wraps the ConnectionError).
    getattr(rex, "RedisClusterUnreachableError", rex.ConnectionError),
    ConnectionError,
    TimeoutError,
    OSError,
)
CLUSTER_MOVING = (
    rex.ClusterError,  # "TTL exhausted": redirected too often, the slot map still moving
    rex.ClusterDownError,
    rex.TryAgainError,
    rex.AskError,  # (and MovedError) past redis-py's own redirections
    rex.SlotNotCoveredError,
)
"""A Redis Cluster in a failover or a resharding: as unavailable as a lost server, for now."""


_failures = 0
"""Redis calls of this process that failed for want of Redis (each ``Unavailable`` of ``call``
and ``ping``: lost, timed out, loading, busy with a script, a Cluster moving) and pub/sub
connections lost (``count_failure``): what ``deltagate_redis_errors_total`` of a pod or a
dispatcher shows, whichever path made the call (a request, a WebSocket, a probe, a background
step). One count per process, as a pod or a dispatcher is one process."""


def count_failure() -> None:
    """One more Redis failure of this process (``redis_failures``)."""
    global _failures
    _failures += 1


def redis_failures() -> int:
    """Redis failures of this process so far (``count_failure``)."""
    return _failures


def _failed(message: str) -> Unavailable:
    count_failure()
    return Unavailable(message)


async def call(awaitable: Awaitable[T]) -> T:
    """Await one Redis call, turning a lost or slow Redis into ``Unavailable`` (a full one into
    ``StorageFull``). A plain ``try``, not a context manager: this wraps every Redis call, and
    an ``asynccontextmanager`` cost an async generator and its hooks each time. Each
    ``Unavailable`` is counted (``count_failure``)."""
    try:
        return await awaitable
    except rex.BusyLoadingError as exc:
        raise _failed("Redis is loading its data set") from exc
    except rex.OutOfMemoryError as exc:
        raise StorageFull(
            "Redis is full (maxmemory reached): nothing was written; retry once retention or an "
            "operator made room"
        ) from exc
    except TRANSIENT as exc:
        raise _failed(f"Redis is unavailable: {exc.__class__.__name__}") from exc
    except CLUSTER_MOVING as exc:
        raise _failed(f"the Redis Cluster is moving: {exc.__class__.__name__}") from exc
    except rex.ResponseError as exc:
        if busy(exc):
            raise _failed("Redis is busy running a script: retry shortly") from exc
        raise
    except (AttributeError, RuntimeError) as exc:
        if not _inside_redis_py(exc):
            raise
        # redis-py's Cluster client, when a node dies under concurrent calls, can use a
        # connection another call is closing ("'NoneType' object has no attribute
        # 'writelines'", "the handler is closed"): the node is gone, nothing was sent.
        raise _failed(f"Redis is unavailable: {exc.__class__.__name__}") from exc


def _inside_redis_py(exc: BaseException) -> bool:
    """Whether ``exc`` was raised in redis-py's own code (its innermost frame)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__", "").startswith("redis.")


async def run_scripts(
    client: Any, script: Any, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
) -> list[Any]:
    """Run ``script`` once per ``(keys, args)`` of ``calls``: each call's reply or its error,
    unless Redis is lost for all of them at once (raised: ``Unavailable``). On the client's
    ``Lane`` they go as one write; on a Redis Cluster, whose pipelines refuse scripts, each on
    its own (to its key's shard); elsewhere as EVALSHAs in one pipeline, not registered with it
    (redis-py would ask SCRIPT EXISTS first, a round trip each time), and only after Redis lost
    the script (a restart) one at a time again."""
    if len(calls) == 1 or lane(client) is not None or sharded(client):
        return await asyncio.gather(
            *(call(run_script(client, script, keys, args)) for keys, args in calls),
            return_exceptions=True,
        )
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results = await call(pipe.execute(raise_on_error=False))
    for i, result in enumerate(results):
        if isinstance(result, rex.NoScriptError):
            keys, args = calls[i]
            results[i] = await call(script(keys=keys, args=args))
    return list(results)


def busy(exc: rex.ResponseError) -> bool:
    """Whether Redis refused a command with BUSY: a script (anyone's) has run past
    ``busy-reply-threshold`` and Redis answers nothing else until it ends. redis-py has no class
    for it (a plain ResponseError, its text prefixed with the command when in a pipeline)."""
    text = str(exc)
    return text.startswith("BUSY ") or "caused error: ('BUSY " in text


def load_script(client: Any, name: str, *libraries: str) -> Any:
    """Register ``broker/scripts/<name>.lua``, after ``broker/scripts/lib/<library>.lua`` for each
    library it uses (Lua scripts cannot import: the shared machinery is put in front of them);
    redis-py reloads it after a Redis restart."""
    scripts = resources.files("broker").joinpath("scripts")
    parts = [scripts.joinpath(f"lib/{lib}.lua").read_text() for lib in libraries]
    parts.append(scripts.joinpath(f"{name}.lua").read_text())
    return client.register_script("\n".join(parts))


async def first_contact(client: Any, attempts: int = 5, seconds: float = 1.0) -> None:
    """Try Redis a few times at a process' start, saying so each time; the process starts
    either way and reports not-ready until Redis answers. A Redis that answers with an error
    (``DB index is out of range`` for a URL's ``/99``) is ``RedisRefused``: the start fails in
    words, where the process would otherwise fail on it at every call."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            await ping(client, seconds)
            return
        except Unavailable as exc:
            log.warning("redis not reachable yet", extra={"attempt": attempt, "error": str(exc)})
            if attempt < attempts:  # (no wait after the last: the start goes on)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        except (rex.ResponseError, rex.RedisClusterException) as exc:
            # (the latter: a node that answers, but is no Cluster's: "Cluster mode is not
            # enabled on this node")
            raise RedisRefused(f"Redis refused the connection: {exc}") from None


async def ping(client: Any, seconds: float) -> None:
    """Whether Redis answers within ``seconds``: returns, or raises Unavailable."""
    try:
        await asyncio.wait_for(call(client.ping()), seconds)
    except TimeoutError:
        raise _failed(f"Redis did not answer within {seconds:g} s") from None
