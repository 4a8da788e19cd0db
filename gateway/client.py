"""The Python client of deltagate: an async HTTP client for the REST API (httpx) and a resuming
live subscription over the WebSocket (websockets).

    async with DeltaGateClient("http://127.0.0.1:8787") as client:
        await client.append("orders", "order-1", [{"type": "order.placed", "data": {...}}])
        async for event in client.subscribe("order.*", store="orders", position="earliest"):
            print(event["globalPosition"], event["type"])

A subscription never gives up on a lost connection: it reconnects with exponential backoff and
full jitter (capped at 30 s), resumes after the last globalPosition it saw (of an event, a
checkpoint or ``caughtUp``) and drops anything at or below it, so each matching event is
yielded exactly once, in order, across disconnects and pod restarts. What retrying cannot fix
(a refused subscribe, close codes 4001/4003/4004) raises :class:`DeltaGateError`.

This module imports nothing of the server: it is what a user's program needs, and no more.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeGuard
from urllib.parse import quote, urlencode

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

log = logging.getLogger("deltagate.client")

Position = int | Literal["latest", "earliest"]
Event = dict[str, Any]
State = Literal["connecting", "open", "reconnecting", "closed"]

DEFAULT_URL = "http://127.0.0.1:8787"

# Close codes after which reconnecting cannot help (contract section 2).
PERMANENT_CLOSE = {4001: "UNAUTHORIZED", 4003: "FORBIDDEN", 4004: "EVENT_STORE_NOT_FOUND"}
# Error codes that refuse a subscribe only for now.
TEMPORARY = frozenset({"RATE_LIMIT_EXCEEDED", "UNAVAILABLE", "INTERNAL_ERROR"})


class _Retry(Exception):
    """The server refused our subscribe for now: drop the connection and try again later."""


class DeltaGateError(Exception):
    """An error from deltagate (its ``{error, message, details?}`` body) or from reaching it.

    ``status`` is the HTTP status (None when the server could not be reached); ``temporary``
    says whether the same request may succeed later (429, 503, network)."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details
        self.retry_after = retry_after

    @property
    def temporary(self) -> bool:
        return self.status is None or self.status in (429, 503)

    @classmethod
    def from_response(cls, response: httpx.Response) -> DeltaGateError:
        retry = response.headers.get("retry-after")
        retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return cls(
                body["error"],
                str(body.get("message", "")),
                response.status_code,
                body.get("details"),
                retry_after,
            )
        text = response.text.strip()[:200] or response.reason_phrase
        return cls(f"HTTP_{response.status_code}", text, response.status_code, None, retry_after)


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


class DeltaGateClient:
    """Async client of one deltagate deployment. Use as ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        ws_base(self.base_url)  # fail early on a URL we cannot use
        self.api_key = api_key
        self.token = token
        headers = {"User-Agent": "deltagate-python"}
        if api_key:
            headers["X-API-Key"] = api_key
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout)
        self.http.headers.update(headers)

    async def __aenter__(self) -> DeltaGateClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # -- plumbing ------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call; the decoded JSON body, or :class:`DeltaGateError`."""
        url = self.base_url + path
        try:
            response = await self.http.request(
                method, url, params=params, json=json_body, headers=headers
            )
        except httpx.TimeoutException:
            raise DeltaGateError(
                "TIMEOUT", f"{self.base_url} did not answer {method} {path} in time"
            ) from None
        except httpx.TransportError as exc:
            raise DeltaGateError(
                "CONNECTION_ERROR", f"cannot reach deltagate at {self.base_url}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise DeltaGateError.from_response(response)
        try:
            return response.json()
        except ValueError:
            raise DeltaGateError(
                "INVALID_RESPONSE",
                f"{method} {path} answered {response.status_code} without JSON",
                response.status_code,
            ) from None

    @staticmethod
    def _store(store: str) -> str:
        return f"/event-stores/{_segment(store)}"

    # -- stores --------------------------------------------------------------------------------

    async def list_stores(self) -> list[dict[str, Any]]:
        body = await self.request("GET", "/event-stores")
        return list(body["eventStores"])

    async def get_store(self, store: str) -> dict[str, Any]:
        return await self.request("GET", self._store(store))  # type: ignore[no-any-return]

    async def create_store(
        self,
        name: str,
        description: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if description is not None:
            body["description"] = description
        if settings is not None:
            body["settings"] = dict(settings)
        return await self.request("POST", "/event-stores", json_body=body)  # type: ignore[no-any-return]

    async def ensure_store(self, name: str) -> None:
        """Create the store unless it exists (races with another creator are fine)."""
        try:
            await self.get_store(name)
            return
        except DeltaGateError as exc:
            if exc.code != "EVENT_STORE_NOT_FOUND":
                raise
        try:
            await self.create_store(name)
        except DeltaGateError as exc:
            if exc.code != "EVENT_STORE_ALREADY_EXISTS":
                raise

    async def delete_store(self, store: str) -> dict[str, Any]:
        return await self.request(  # type: ignore[no-any-return]
            "DELETE", self._store(store), params={"confirm": "true"}
        )

    # -- events --------------------------------------------------------------------------------

    async def append(
        self,
        store: str,
        stream_id: str,
        events: Iterable[Mapping[str, Any]],
        *,
        expected_version: int | str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Append 1 to 1000 events ``{type, data, metadata?, schemaVersion?}`` atomically."""
        body: dict[str, Any] = {"events": [dict(e) for e in events]}
        if expected_version is not None:
            body["options"] = {"expectedStreamVersion": expected_version}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request(  # type: ignore[no-any-return]
            "POST",
            f"{self._store(store)}/streams/{_segment(stream_id)}",
            json_body=body,
            headers=headers,
        )

    async def read_stream(
        self,
        store: str,
        stream_id: str,
        *,
        direction: Literal["forward", "backward"] = "forward",
        from_position: int | None = None,
        to: int | None = None,
        limit: int = 1000,
    ) -> dict[str, Any]:
        """One page of a stream: ``{events, currentStreamVersion}`` (positions are stream
        positions)."""
        params: dict[str, Any] = {"direction": direction, "limit": limit}
        if from_position is not None:
            params["from"] = from_position
        if to is not None:
            params["to"] = to
        return await self.request(  # type: ignore[no-any-return]
            "GET", f"{self._store(store)}/streams/{_segment(stream_id)}", params=params
        )

    async def iter_stream(
        self, store: str, stream_id: str, *, from_position: int = 0
    ) -> AsyncIterator[Event]:
        """Every event of a stream from ``from_position`` on, page by page."""
        start = from_position
        while True:
            page = await self.read_stream(store, stream_id, from_position=start, limit=1000)
            events = page["events"]
            for event in events:
                yield event
            if len(events) < 1000:
                return
            start = events[-1]["streamPosition"] + 1

    async def query(
        self,
        store: str,
        *,
        types: str | Iterable[str] | None = None,
        stream_id: str | None = None,
        from_position: int | None = None,
        to_position: int | None = None,
        limit: int = 100,
        offset: int = 0,
        sort_direction: Literal["asc", "desc"] = "asc",
        include_count: bool = False,
    ) -> dict[str, Any]:
        """One page of the store's events: ``{events, pagination}`` (positions inclusive)."""
        params: list[tuple[str, Any]] = [
            ("limit", limit),
            ("offset", offset),
            ("sortDirection", sort_direction),
        ]
        if types is not None:
            params += [("type", t) for t in ([types] if isinstance(types, str) else types)]
        if stream_id is not None:
            params.append(("streamId", stream_id))
        if from_position is not None:
            params.append(("fromPosition", from_position))
        if to_position is not None:
            params.append(("toPosition", to_position))
        if include_count:
            params.append(("includeCount", "true"))
        return await self.request(  # type: ignore[no-any-return]
            "GET", f"{self._store(store)}/events", params=params
        )

    async def list_streams(
        self, store: str, *, limit: int = 100, offset: int = 0, search: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if search is not None:
            params["search"] = search
        return await self.request(  # type: ignore[no-any-return]
            "GET", f"{self._store(store)}/streams", params=params
        )

    # -- live ----------------------------------------------------------------------------------

    def subscribe(
        self,
        event_filter: str | list[str] = "*",
        *,
        store: str,
        position: Position = "latest",
        stream_id: str | None = None,
        follow: bool = True,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        max_attempts: int | None = None,
        on_state: Callable[[State], None] | None = None,
    ) -> Subscription:
        """Events of ``store`` matching ``event_filter`` after ``position``, live, resuming
        across reconnects. ``follow=False`` stops once the replay reached the head."""
        return Subscription(
            ws_base(self.base_url),
            store,
            event_filter,
            stream_id=stream_id,
            position=position,
            api_key=self.api_key,
            token=self.token,
            follow=follow,
            initial_delay=initial_delay,
            max_delay=max_delay,
            max_attempts=max_attempts,
            on_state=on_state,
        )


_sub_ids = itertools.count(1)


class Subscription:
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
        open_timeout: float = 10.0,
    ) -> None:
        if position not in ("latest", "earliest") and not (
            isinstance(position, int) and not isinstance(position, bool) and position >= 0
        ):
            raise ValueError("position must be 'latest', 'earliest' or an integer >= 0")
        query = {"token": token} if token else {"apiKey": api_key} if api_key else {}
        self.url = f"{ws_url}/event-stores/{_segment(store)}/events/ws"
        if query:
            self.url += "?" + urlencode(query)
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
        self.open_timeout = open_timeout
        self.id = f"py-{secrets.token_hex(3)}-{next(_sub_ids)}"
        self.state: State = "closed"
        self.attempts = 0
        self._events: AsyncGenerator[Event, None] | None = None
        self._closed = False

    # -- iteration -------------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._events is None:
            self._events = self._run()
        return await self._events.__anext__()

    async def __aenter__(self) -> Subscription:
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
        return json.dumps(message)

    async def _run(self) -> AsyncGenerator[Event, None]:
        self._set_state("connecting")
        try:
            while True:
                code: int | None = None
                try:
                    async with websockets.connect(
                        self.url,
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
        elif kind == "subscribed":
            self.attempts = 0
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
