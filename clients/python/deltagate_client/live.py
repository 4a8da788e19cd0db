"""A live subscription over deltagate's WebSocket that never gives up: it reconnects with
exponential backoff and full jitter (capped at 30 s), resumes after the last globalPosition it saw
(of an event, a checkpoint or ``caughtUp``) and drops anything at or below it, so each matching
event is yielded exactly once, in order, across disconnects and pod restarts. What retrying cannot
fix (a refused subscribe, close codes 4001/4003/4004) raises :class:`DeltaGateError`.

An API key goes in the ``X-API-Key`` header of the upgrade, never in the URL (URLs end up in
proxies' logs); a browser token, which is short-lived, goes in ``?token=``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import secrets
from collections.abc import AsyncGenerator, Callable, Iterable
from types import TracebackType
from typing import Any, Literal, TypeGuard
from urllib.parse import quote, urlencode

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import DeltaGateError

log = logging.getLogger("deltagate.client")

Position = int | Literal["latest", "earliest"]
Event = dict[str, Any]
State = Literal["connecting", "open", "reconnecting", "closed"]

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
    ) -> None:
        if position not in ("latest", "earliest") and not (
            isinstance(position, int) and not isinstance(position, bool) and position >= 0
        ):
            raise ValueError("position must be 'latest', 'earliest' or an integer >= 0")
        self.url = f"{ws_url}/event-stores/{_segment(store)}/events/ws"
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
        self._events: AsyncGenerator[Event, None] | None = None
        self._closed = False

    # -- iteration -------------------------------------------------------------------------------

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._events is None:
            self._events = self._run()
        return await self._events.__anext__()

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
        """Close the connection and end the iteration. Safe to call twice."""
        self._closed = True
        events, self._events = self._events, None
        if events is not None:
            await events.aclose()
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
                code: int | None = None
                try:
                    async with websockets.connect(
                        self.url,
                        additional_headers=self.headers,
                        open_timeout=self.open_timeout,
                        max_size=None,
                        ping_interval=20,
                        ping_timeout=20,
                        compression=None,
                    ) as ws:
                        self._set_state("open")
                        await ws.send(self._subscribe_message())
                        async for raw in ws:
                            done = False
                            for event in self._handle(raw):
                                if event is None:
                                    done = True
                                    break
                                yield event
                            if done:
                                return
                        code = ws.close_code
                except _Retry as exc:
                    log.info("subscribe refused for now (%s); retrying", exc)
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd is not None else None
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if status in (401, 403, 404):
                        raise DeltaGateError(
                            {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND"}[status],
                            f"WebSocket upgrade refused with HTTP {status}",
                            status,
                        ) from None
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    log.debug("connection attempt failed: %s", exc)
                if code in PERMANENT_CLOSE:
                    raise DeltaGateError(
                        PERMANENT_CLOSE[code], f"the server closed the connection with {code}"
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
                await asyncio.sleep(delay)
        finally:
            self._set_state("closed")

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
        if not isinstance(message, dict) or message.get("subscriptionId") != self.id:
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
            if not self.follow and (self.cursor if self.cursor is not None else 0) >= head:
                yield None  # nothing to replay
        elif kind == "error":
            code = str(message.get("error", "ERROR"))
            if code in TEMPORARY:
                raise _Retry(code)  # refused for now: reconnect after a backoff
            raise DeltaGateError(code, str(message.get("message", "")))
