"""An async HTTP client of deltagate's REST API (httpx).

async with DeltaGateClient("http://127.0.0.1:8787") as client:
    await client.append("orders", "order-1", [{"type": "order.placed", "data": {...}}])
    async for event in client.subscribe("order.*", store="orders", position="earliest"):
        print(event["globalPosition"], event["type"])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Literal

import httpx

from .errors import DeltaGateError
from .live import Event, Position, State, Subscriber, TokenSource, Transport, _segment, ws_base

DEFAULT_URL = "http://127.0.0.1:8787"


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
        """Every store the key may use (the server answers a page at a time)."""
        stores: list[dict[str, Any]] = []
        while True:
            params = {"limit": 1000, "offset": len(stores)}
            body = await self.request("GET", "/event-stores", params=params)
            stores += body["eventStores"]
            if not body["eventStores"] or len(stores) >= body["totalCount"]:
                return stores

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

    # -- browser tokens --------------------------------------------------------------------------

    async def mint_token(
        self,
        store: str,
        *,
        ttl_seconds: int = 300,
        event_filter: str | list[str] | None = None,
        stream_id: str | None = None,
    ) -> dict[str, Any]:
        """A short-lived WebSocket token for a browser: ``{token, expiresAt}``."""
        body: dict[str, Any] = {"ttlSeconds": ttl_seconds}
        if event_filter is not None:
            body["eventFilter"] = event_filter
        if stream_id is not None:
            body["streamId"] = stream_id
        return await self.request(  # type: ignore[no-any-return]
            "POST", f"{self._store(store)}/ws-tokens", json_body=body
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
        on_notice: Callable[[dict[str, Any]], None] | None = None,
        transport: Transport = "websocket",
        get_token: TokenSource | None = None,
    ) -> Subscriber:
        """Events of ``store`` matching ``event_filter`` after ``position``, live, resuming
        across reconnects. ``follow=False`` stops once the replay reached the head.
        ``transport="sse"`` reads Server-Sent Events instead of a WebSocket; ``get_token``
        supplies fresh browser tokens (and refreshes a WebSocket's before they expire)."""
        return Subscriber(
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
            on_notice=on_notice,
            transport=transport,
            get_token=get_token,
        )
