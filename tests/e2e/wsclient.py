"""A small resuming WebSocket client for the end-to-end tests, built on the `websockets` library.

It records, per subscription filter, every event it received and the cursor (last globalPosition
of an event, checkpoint or caughtUp) so a test can disconnect and resume by number.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import websockets


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)
    cursor: int = 0
    caught_up: int | None = None
    subscribed: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    truncated: list[dict[str, Any]] = field(default_factory=list)
    resets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def positions(self) -> list[int]:
        return [e["globalPosition"] for e in self.events]


class Client:
    def __init__(self, ws_url: str, store: str) -> None:
        self.base = ws_url
        self.store = store
        self.ws: Any = None
        self.got = Received()
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None

    async def connect(self, ws_url: str | None = None, query: str = "") -> None:
        url = f"{ws_url or self.base}/event-stores/{self.store}/events/ws{query}"
        self.ws = await websockets.connect(url, max_size=None, open_timeout=10)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.on_message(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code

    def on_message(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        got = self.got
        if kind == "event":
            got.events.append(msg["event"])
            got.cursor = msg["event"]["globalPosition"]
        elif kind == "caughtUp":
            got.caught_up = msg["globalPosition"]
            got.cursor = max(got.cursor, msg["globalPosition"])
        elif kind == "checkpoint":
            got.checkpoints.append(msg["globalPosition"])
            got.cursor = max(got.cursor, msg["globalPosition"])
        elif kind == "subscribed":
            got.subscribed.append(msg)
        elif kind == "error":
            got.errors.append(msg)
        elif kind == "truncated":
            got.truncated.append(msg)
        elif kind == "reset":
            got.resets.append(msg)
            got.cursor = 0  # the store's history starts again for this subscription

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def subscribe(
        self,
        event_filter: Any = "*",
        position: Any = "latest",
        stream_id: str | None = None,
        epoch: str | None = None,
    ) -> None:
        message: dict[str, Any] = {
            "action": "subscribe",
            "eventFilter": event_filter,
            "position": position,
        }
        if stream_id is not None:
            message["streamId"] = stream_id
        if epoch is not None:
            message["epoch"] = epoch
        before = len(self.got.subscribed)
        await self.send(**message)
        await self.wait(
            lambda: len(self.got.subscribed) > before or self.got.errors, what="subscribed"
        )
        if position == "latest" and len(self.got.subscribed) > before:
            # A latest subscription starts after the head it reports.
            self.got.cursor = max(self.got.cursor, self.got.subscribed[-1]["position"])

    async def wait(self, predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; got {len(self.got.events)} "
                    f"events, cursor {self.got.cursor}, errors {self.got.errors}"
                )
            await asyncio.sleep(0.01)

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
        self.ws = None

    async def resume(self, ws_url: str, event_filter: Any, stream_id: str | None = None) -> None:
        """Reconnect (possibly to another pod) and continue after the last position seen."""
        await self.disconnect()
        await self.connect(ws_url)
        await self.subscribe(event_filter, self.got.cursor, stream_id)
