"""A live subscription over deltagate's WebSocket (or, with ``transport="sse"``, its Server-Sent
Events stream) that never gives up: it reconnects with
exponential backoff and full jitter (capped at 30 s), resumes after the last globalPosition it saw
(of an event, a checkpoint or ``caughtUp``) and drops anything at or below it, so each matching
event is yielded exactly once, in order, across disconnects and pod restarts. What retrying cannot
fix (a refused subscribe, close codes 4001/4003/4004) raises :class:`DeltaGateError`.

An API key goes in the ``X-API-Key`` header, never in the URL (URLs end up in proxies' logs); a
browser token, which is short-lived, goes in ``?token=``. With ``get_token`` (a callable returning
a token, or the ``{token, expiresAt}`` answer of ``POST .../ws-tokens``, or an awaitable of either)
every connection gets a fresh token, and a WebSocket's token is refreshed over the open socket
(``{"action": "refresh"}``) ``refresh_before`` seconds before it expires: no reconnect.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import itertools
import json
import logging
import random
import secrets
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeGuard
from urllib.parse import quote, urlencode

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import STATUS_OF, DeltaGateError

log = logging.getLogger("deltagate.client")

Position = int | Literal["latest", "earliest"] | dict[str, str]
"""``latest``, ``earliest``, a globalPosition N (events after N), or ``{"time": "<ISO 8601>"}``."""
Event = dict[str, Any]
State = Literal["connecting", "open", "reconnecting", "closed"]
Transport = Literal["websocket", "sse"]
TokenSource = Callable[[], Any]
"""Returns a token, or ``{"token", "expiresAt"}``, or an awaitable of either."""

# Close codes after which reconnecting cannot help (contract section 2).
PERMANENT_CLOSE = {4001: "UNAUTHORIZED", 4003: "FORBIDDEN", 4004: "EVENT_STORE_NOT_FOUND"}
# Error codes that refuse a subscribe only for now.
TEMPORARY = frozenset({"RATE_LIMIT_EXCEEDED", "UNAVAILABLE", "INTERNAL_ERROR"})


class _Retry(Exception):
    """The server refused our subscribe for now: drop the connection and try again later."""


def ws_base(base_url: str) -> str:
    """``http(s)://host`` -> ``ws(s)://host`` (a ws(s) URL is kept)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :]
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :]
    if base.startswith(("ws://", "wss://")):
        return base
    raise ValueError(f"base URL must start with http(s):// or ws(s)://, got {base_url!r}")


def backoff(attempt: int, initial: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, initial * 2**attempt)]."""
    return random.uniform(0, min(cap, initial * 2 ** min(attempt, 32)))


def _valid(event: object) -> TypeGuard[Event]:
    if not isinstance(event, dict):
        return False
    position = event.get("globalPosition")
    return (
        isinstance(event.get("type"), str)
        and bool(event["type"])
        and isinstance(event.get("streamId"), str)
        and bool(event["streamId"])
        and isinstance(position, int)
        and not isinstance(position, bool)
        and position > 0
    )


def _segment(value: str) -> str:
    return quote(value, safe="")


def token_expiry(token: str, expires_at: str | None = None) -> float | None:
    """When a token expires (seconds since the epoch): ``expires_at`` (ISO 8601), else the JWT's
    ``exp`` claim; None when unknown."""
    if expires_at:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None
    except (IndexError, ValueError, AttributeError):
        return None


async def _sse_messages(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` of each text/event-stream message (comments and ``retry`` skipped)."""
    kind: str = "message"
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)


def _valid_position(position: object) -> bool:
    if position in ("latest", "earliest"):
        return True
    if isinstance(position, dict):
        return set(position) == {"time"} and isinstance(position["time"], str)
    return isinstance(position, int) and not isinstance(position, bool) and position >= 0


_sub_ids = itertools.count(1)


class Subscriber:
    """``async for event in subscription``; an async context manager whose exit closes the
    connection. ``cursor`` is the last globalPosition seen (None: not known yet)."""

    def __init__(
        self,
        ws_url: str,
        store: str,
        event_filter: str | list[str],
        *,
        stream_id: str | None = None,
        position: Position = "latest",
        api_key: str | None = None,
        token: str | None = None,
        follow: bool = True,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        max_attempts: int | None = None,
        on_state: Callable[[State], None] | None = None,
        on_notice: Callable[[dict[str, Any]], None] | None = None,
        open_timeout: float = 10.0,
        transport: Transport = "websocket",
        get_token: TokenSource | None = None,
        refresh_before: float = 60.0,
        read_timeout: float = 45.0,
    ) -> None:
        if not _valid_position(position):
            raise ValueError(
                "position must be 'latest', 'earliest', an integer >= 0 or {'time': ISO 8601}"
            )
        if transport not in ("websocket", "sse"):
            raise ValueError("transport must be 'websocket' or 'sse'")
        self.transport = transport
        self.ws_url = ws_url
        self.url = f"{ws_url}/event-stores/{_segment(store)}/events/ws"
        self.api_key = api_key
        self.token = token
        self.get_token = get_token
        self.refresh_before = refresh_before
        """A WebSocket's token is refreshed this many seconds before it expires (at most half
        the time left)."""
        self.read_timeout = read_timeout
        """SSE: a stream silent this long (no event, no 15 s heartbeat) is reconnected."""
        self.headers: dict[str, str] = {}
        if token:
            self.url += "?" + urlencode({"token": token})
        elif api_key:
            self.headers["X-API-Key"] = api_key
        self.store = store
        self.event_filter = event_filter
        self.stream_id = stream_id
        self.position = position
        # The last globalPosition seen; None until known ('earliest' is resumed as such
        # until an event or checkpoint arrives, 'latest' from the head in `subscribed`).
        self.cursor: int | None = position if isinstance(position, int) else None
        self.follow = follow
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.on_state = on_state
        self.on_notice = on_notice
        """Told of ``reset`` (the store's history started again: what follows is its first
        event on) and ``truncated`` (history asked for is gone). Default: logged."""
        self.epoch: str | None = None
        """The store's epoch the cursor belongs to (from ``subscribed``)."""
        self.open_timeout = open_timeout
        self.id = f"py-{secrets.token_hex(3)}-{next(_sub_ids)}"
        self.state: State = "closed"
        self.attempts = 0
        self._events: AsyncGenerator[Event, None] | None = None  # of ``anext(subscriber)``
        self._iterations: weakref.WeakSet[AsyncGenerator[Event, None]] = weakref.WeakSet()
        """The iterations of ``async for`` loops, closed by ``aclose()`` (held by the loops)."""
        self._closing = asyncio.Event()
        """Set by ``aclose()`` (``_closed``): wakes an iteration waiting to reconnect, in any
        task."""
        self._connections: set[Callable[[], Awaitable[Any]]] = set()
        """How to close each open connection (its WebSocket or SSE response): ``aclose()`` in
        another task than the one iterating cannot close the iteration itself (it is running,
        awaiting the next message), so it ends it by its connection."""
        self._code: int | None = None  # how the last connection ended (a close code)
        self._reason = ""  # and the server's reason for it

    # -- iteration -------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        # Each ``async for`` gets an iteration of its own, resumed from the cursor. Only the loop
        # holds it: a ``break`` (without ``async with`` or ``aclose()``) drops it at once, and
        # asyncio closes it and its connection then. Were it held here, it and this subscriber
        # would form a cycle, which the garbage collector frees later, closing the iteration
        # and its connection in two tasks, the second failing ("already running").
        if self._closed:
            return self  # (whose __anext__ ends at once)
        events = self._run()
        self._iterations.add(events)
        return events

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._events is None:
            self._events = self._run()
        return await self._events.__anext__()

    @property
    def _closed(self) -> bool:
        return self._closing.is_set()

    async def __aenter__(self) -> Subscriber:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection and end the iteration, from any task (an ``async for`` in
        another task then ends). Safe to call twice."""
        self._closing.set()
        events, self._events = self._events, None
        for iteration in [*self._iterations, *([events] if events is not None else [])]:
            if not getattr(iteration, "ag_running", False):  # (running: in another task)
                await iteration.aclose()
        # Iterations running in other tasks end once their connection is gone.
        for close in list(self._connections):
            with contextlib.suppress(Exception):
                await close()
        self._set_state("closed")

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    def _subscribe_message(self) -> str:
        message: dict[str, Any] = {
            "action": "subscribe",
            "subscriptionId": self.id,
            "eventFilter": self.event_filter,
            "position": self.position if self.cursor is None else self.cursor,
        }
        if self.stream_id is not None:
            message["streamId"] = self.stream_id
        if self.cursor is not None and self.epoch is not None:
            message["epoch"] = self.epoch  # a re-created store is then told apart: reset
        return json.dumps(message)

    async def _run(self) -> AsyncGenerator[Event, None]:
        self._set_state("connecting")
        try:
            while True:
                self._code, self._reason = None, ""
                once = self._sse_once() if self.transport == "sse" else self._ws_once()
                try:
                    async with contextlib.aclosing(once) as events:
                        async for event in events:
                            if event is None:
                                return
                            yield event
                except _Retry as exc:
                    log.info("refused for now (%s); retrying", exc)
                except ConnectionClosed as exc:
                    if exc.rcvd is not None:
                        self._code, self._reason = exc.rcvd.code, exc.rcvd.reason
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if status in (401, 403, 404) and not (status == 401 and self.get_token):
                        raise DeltaGateError(
                            {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND"}[status],
                            f"WebSocket upgrade refused with HTTP {status}",
                            status,
                        ) from None
                except (OSError, TimeoutError, InvalidHandshake, httpx.TransportError) as exc:
                    log.debug("connection attempt failed: %s", exc)
                except Exception:
                    if not self._closed:
                        raise
                    # (what aclose() in another task broke by closing the connection)
                if self._closed:
                    return
                code = self._code
                # An expired token is no reason to stop when a fresh one can be had.
                if code in PERMANENT_CLOSE and not (code == 4001 and self.get_token):
                    why = f": {self._reason}" if self._reason else ""
                    refused = PERMANENT_CLOSE[code]
                    raise DeltaGateError(
                        refused,
                        f"the server closed the connection with {code}{why}",
                        STATUS_OF[refused],
                    )
                if self.max_attempts is not None and self.attempts >= self.max_attempts:
                    raise DeltaGateError(
                        "UNAVAILABLE", f"gave up after {self.attempts} reconnection attempts"
                    )
                # A draining pod (1012) asks us to move elsewhere: retry in the first window.
                delay = backoff(
                    0 if code == 1012 else self.attempts, self.initial_delay, self.max_delay
                )
                self.attempts += 1
                self._set_state("reconnecting")
                log.info("reconnecting in %.2fs (close code %s)", delay, code)
                with contextlib.suppress(TimeoutError):  # (or until aclose(), in any task)
                    await asyncio.wait_for(self._closing.wait(), delay)
                if self._closed:
                    return
        finally:
            self._set_state("closed")

    async def _fresh_token(self) -> tuple[str | None, float | None]:
        """A token for the next connection (or refresh) and when it expires."""
        if self.get_token is None:
            return self.token, None
        got = self.get_token()
        if inspect.isawaitable(got):
            got = await got
        if isinstance(got, dict):
            token = got.get("token")
            return token, token_expiry(token or "", got.get("expiresAt"))
        return (got or None), token_expiry(got) if got else None

    # -- WebSocket -------------------------------------------------------------------------------

    async def _ws_once(self) -> AsyncGenerator[Event | None, None]:
        """One WebSocket connection: its events (None: the iteration is complete)."""
        url, headers = self.url, self.headers
        expires = None
        if self.get_token is not None:
            token, expires = await self._fresh_token()
            base = f"{self.ws_url}/event-stores/{_segment(self.store)}/events/ws"
            url = base + ("?" + urlencode({"token": token}) if token else "")
            if not token and self.api_key:
                headers = {"X-API-Key": self.api_key}
        async with websockets.connect(
            url,
            additional_headers=headers,
            open_timeout=self.open_timeout,
            max_size=None,
            ping_interval=20,
            ping_timeout=20,
            compression=None,
        ) as ws:
            if self._closed:
                return
            self._connections.add(ws.close)
            self._set_state("open")
            refresher = None
            try:
                await ws.send(self._subscribe_message())
                if expires is not None:
                    refresher = asyncio.create_task(self._refresh(ws, expires))
                async for raw in ws:
                    for event in self._handle(raw):
                        yield event
            finally:
                self._connections.discard(ws.close)
                if refresher is not None:
                    refresher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await refresher
            self._code, self._reason = ws.close_code, ws.close_reason or ""

    async def _refresh(self, ws: Any, expires: float) -> None:
        """Send a fresh token over the open socket a while before each one expires. A failure
        is logged: the server then closes the socket once the token's grace is over, and the
        reconnect fetches a fresh token anyway."""
        while True:
            left = expires - time.time()
            await asyncio.sleep(max(0.0, left - min(self.refresh_before, left / 2)))
            try:
                token, next_expiry = await self._fresh_token()
                if not token or next_expiry is None:
                    return
                await ws.send(json.dumps({"action": "refresh", "token": token}))
            except ConnectionClosed:
                return
            except Exception as exc:  # the caller's get_token failed: say so, keep the socket
                log.warning("token refresh failed: %s", exc)
                return
            expires = next_expiry

    # -- Server-Sent Events -----------------------------------------------------------------------

    async def _sse_once(self) -> AsyncGenerator[Event | None, None]:
        """One SSE response: its events (None: the iteration is complete)."""
        token, _ = await self._fresh_token()
        patterns = [self.event_filter] if isinstance(self.event_filter, str) else self.event_filter
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("eventFilter", p) for p in patterns
        ]
        if self.stream_id is not None:
            params.append(("streamId", self.stream_id))
        headers = {"Accept": "text/event-stream"}
        if self.cursor is not None:
            headers["Last-Event-ID"] = str(self.cursor)  # resumes exactly after it
            if self.epoch is not None:
                params.append(("epoch", self.epoch))
        else:
            position = self.position
            params.append(
                ("position", json.dumps(position) if isinstance(position, dict) else str(position))
            )
        if token:
            params.append(("token", token))
        elif self.api_key:
            headers["X-API-Key"] = self.api_key
        http_base = "http" + self.ws_url.removeprefix("ws")
        url = f"{http_base}/event-stores/{_segment(self.store)}/events/sse"
        timeout = httpx.Timeout(self.open_timeout, read=self.read_timeout)
        async with (
            httpx.AsyncClient(timeout=timeout) as http,
            http.stream("GET", url, params=params, headers=headers) as response,
        ):
            if response.status_code != 200:
                await response.aread()
                try:
                    body = response.json()
                    code, text = str(body["error"]), str(body.get("message", ""))
                except (ValueError, KeyError, TypeError):
                    code, text = "UNAVAILABLE", response.text[:200]
                status = response.status_code
                if status in (429, 503) or status >= 500 or (status == 401 and self.get_token):
                    raise _Retry(code)
                raise DeltaGateError(code, text, status)
            if self._closed:
                return
            self._set_state("open")
            self._connections.add(response.aclose)
            try:
                async for kind, data in _sse_messages(response.aiter_lines()):
                    try:
                        payload = json.loads(data)
                    except ValueError:
                        log.warning("ignoring an SSE message that is not JSON")
                        continue
                    if kind == "close":  # the stream ends next
                        self._code = payload.get("code")
                        self._reason = str(payload.get("reason", ""))
                        continue
                    if kind == "event":
                        message = {"type": "event", "subscriptionId": self.id, "event": payload}
                    else:
                        message = {**payload, "type": kind, "subscriptionId": self.id}
                    for event in self._handle_message(message):
                        yield event
            finally:
                self._connections.discard(response.aclose)

    def _notice(self, message: dict[str, Any]) -> None:
        if self.on_notice is not None:
            self.on_notice(message)
        elif message["type"] == "reset":
            log.warning(
                "subscription reset (%s): replaying the store's current history",
                message.get("reason"),
            )
        else:
            log.warning(
                "events after %s and before %s are gone (retention)",
                message.get("requestedPosition"),
                message.get("earliestPosition"),
            )

    def _handle(self, raw: str | bytes) -> Iterable[Event | None]:
        """The events a server message yields; None means the iteration is complete."""
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("ignoring a message that is not JSON")
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "refreshed":
            log.debug("token refreshed; it expires at %s", message.get("expiresAt"))
            return
        if message.get("type") == "error" and "subscriptionId" not in message:
            log.warning("the server refused a request: %s", message.get("message"))
            return  # a refused refresh: the old token holds until it expires
        yield from self._handle_message(message)

    def _handle_message(self, message: dict[str, Any]) -> Iterable[Event | None]:
        if message.get("subscriptionId") != self.id:
            return  # pong, or not ours
        kind = message.get("type")
        if kind == "event":
            self.attempts = 0  # the connection works
            event = message.get("event")
            if not _valid(event):
                log.warning("dropping an invalid event (needs type, streamId, globalPosition)")
                return
            position = event["globalPosition"]
            if self.cursor is not None and position <= self.cursor:
                return  # seen already
            self.cursor = position
            yield event
        elif kind in ("checkpoint", "caughtUp"):
            position = message.get("globalPosition")
            if isinstance(position, int) and (self.cursor is None or position > self.cursor):
                self.cursor = position
            if kind == "caughtUp" and not self.follow:
                yield None
        elif kind == "reset":
            self.cursor = 0  # the server replays the store's current history from its start
            if isinstance(message.get("epoch"), str):
                self.epoch = message["epoch"]
            self._notice(message)
        elif kind == "truncated":
            earliest = message.get("earliestPosition")
            if isinstance(earliest, int):
                self.cursor = max(self.cursor or 0, earliest - 1)
            self._notice(message)
        elif kind == "subscribed":
            self.attempts = 0
            if isinstance(message.get("epoch"), str):
                self.epoch = message["epoch"]
            head = message.get("position")
            if not isinstance(head, int):
                return
            if self.cursor is None and self.position == "latest":
                self.cursor = head
                if not self.follow:
                    yield None  # live only: nothing to replay, and no caughtUp will come
            # Any other start is a replay, which the server ends with caughtUp, even when it
            # has nothing to send: the iteration without follow ends there, not here, for a
            # reset may come first (a position beyond the head, or a store made again) and
            # replay the store's new history from its start.
        elif kind == "error":
            code = str(message.get("error", "ERROR"))
            if code in TEMPORARY:
                raise _Retry(code)  # refused for now: reconnect after a backoff
            raise DeltaGateError(code, str(message.get("message", "")), STATUS_OF.get(code, 400))
