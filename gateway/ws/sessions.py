"""Every open live connection of this pod (WebSocket sessions and SSE responses alike): the
watchdog that closes the ones that must go (stalled readers, revoked keys, expired credentials)
and the spread-out close of a drain."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from broker import BUDGET_FLOOR, BrokerError, KeyStore, QueueBudget, RateLimiter, cancel_and_wait

from ..errors import CLOSE_CODE

if TYPE_CHECKING:
    from ..auth import Principal
    from .outbox import Outbox

log = logging.getLogger("deltagate.ws")

STALL_LINGER = 30.0
"""At most this long, a WebSocket cut for a stall keeps its close frame (and what its transport
held, bounded by its high-water mark) for the client, should it read again."""


class Connection(Protocol):
    """What the watchdog and the drain need of a live connection (``Session``, ``SseStream``)."""

    @property
    def state(self) -> str: ...
    @property
    def sending_since(self) -> float | None:
        """Since when the current write waits for the client (None: not writing)."""
        ...

    @property
    def store(self) -> str: ...
    @property
    def principal(self) -> Principal: ...
    @property
    def conn_id(self) -> str | None: ...
    @property
    def outbox(self) -> Outbox:
        """What is queued to the client (charged to the pod's budget)."""
        ...

    def abort(self, linger: float = 0.0) -> None:
        """Stop sending at once: the client stopped reading (its transport's buffer goes now,
        or after ``linger`` seconds unless the client reads it first)."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Sessions:
    """Every open session of this pod, and the watchdog that closes the ones whose client has
    stopped reading altogether (4008)."""

    def __init__(
        self,
        slow_timeout: float,
        keys: KeyStore,
        limits: RateLimiter,
        *,
        token_grace: float = 30.0,
        budget: QueueBudget | None = None,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self.active: set[Connection] = set()
        self.slow_timeout = slow_timeout
        self.token_grace = token_grace
        """A token's connection is closed this long after the token expired, unless refreshed."""
        self._keys = keys
        self._limits = limits
        self._budget = budget
        self._on_cut = on_cut
        if budget is not None:
            budget.on_over(self.enforce_budget)
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="ws watchdog")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        closing, self._closing = self._closing, set()
        await cancel_and_wait(closing)

    def _close_soon(self, session: Connection, code: int, reason: str) -> None:
        """Close a session from the watchdog without waiting on it (tasks owned here)."""
        task = asyncio.get_running_loop().create_task(session.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def enforce_budget(self) -> None:
        """The pod is past ``DELTAGATE_MAX_QUEUED_BYTES`` although big queues take no more
        (the budget's pressure): cut the biggest connections (4008, they resume by number)
        until it is back under. Called by the budget, at most every ENFORCE_EVERY seconds."""
        budget = self._budget
        assert budget is not None
        for session in self.active:
            session.outbox.refresh()  # what has drained since the last write counts no more
        if budget.used <= budget.limit:
            return
        big = [s for s in self.active if s.outbox.queued() > BUDGET_FLOOR]
        big.sort(key=lambda s: s.outbox.queued(), reverse=True)
        for session in big:
            if budget.used <= budget.limit:
                break
            log.warning(
                "closing a connection: the pod's queued bytes are over budget",
                extra={
                    "store": session.store,
                    "queued_bytes": session.outbox.queued(),
                    "pod_queued_bytes": budget.used,
                    "budget_bytes": budget.limit,
                },
            )
            session.abort()
            self._close_soon(session, CLOSE_CODE["SLOW_CONSUMER"], "slow consumer")
            if self._on_cut is not None:
                self._on_cut()

    async def drain(self, window: float) -> None:
        """Close every session with 1012 after flushing what was queued for it, spread evenly
        over ``window`` seconds so the clients do not all reconnect to the other pods at once."""
        sessions = list(self.active)
        if not sessions:
            return
        gap = window / len(sessions)
        log.info("draining websockets", extra={"connections": len(sessions), "window_s": window})

        async def close_later(session: Connection, delay: float) -> None:
            await asyncio.sleep(delay)
            await session.close(CLOSE_CODE["DRAINING"], "pod draining; reconnect to resume")

        await asyncio.gather(*(close_later(s, i * gap) for i, s in enumerate(sessions)))

    async def _watch(self) -> None:
        """Once a second: close connections whose client stopped reading (4008), whose API key
        was revoked or expired, or whose token expired and was not refreshed within the grace
        (4001); every 10 s, keep this pod's connections counting toward their keys' quotas."""
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            try:
                await self._check(refresh=tick % 10 == 0)
            except BrokerError as exc:
                log.warning(
                    "session checks skipped: Redis unavailable", extra={"error": exc.message}
                )

    async def _check(self, *, refresh: bool) -> None:
        now = time.monotonic()
        wall = time.time()
        keyed: list[tuple[str, Connection]] = []
        for session in self.active:  # one pass: this runs every second over every connection
            if session.state != "open":
                continue
            session.outbox.refresh()  # keep the budget's count of transport buffers current
            since = session.sending_since
            if since is not None and now - since > self.slow_timeout:
                log.warning(
                    "closing a connection that stopped reading",
                    extra={"store": session.store, "stalled_s": round(now - since)},
                )
                # Its close frame waits behind what the transport holds for STALL_LINGER: a
                # client that reads again meanwhile learns it was cut as slow (4008), rather
                # than reset (1006). (The budget's cut frees the memory at once instead.)
                session.abort(linger=STALL_LINGER)
                self._close_soon(session, CLOSE_CODE["SLOW_CONSUMER"], "slow consumer")
                continue
            principal = session.principal
            expires = principal.expires_at
            if expires is not None and principal.via_token:
                expires += self.token_grace  # time to send a refresh
            if expires is not None and wall >= expires:
                what = "token" if principal.via_token else "API key"
                self._close_soon(
                    session,
                    CLOSE_CODE["UNAUTHORIZED"],
                    f"{what} expired: get a new one and resume from your last position",
                )
            if principal.key_id is not None:
                keyed.append((principal.key_id, session))
        if self._budget is not None and self._budget.over:
            self.enforce_budget()  # over without a new charge since the last enforcement
        if keyed:
            alive = await self._keys.alive(list({key_id for key_id, _ in keyed}))
            for key_id, session in keyed:
                if key_id not in alive:
                    self._close_soon(
                        session, CLOSE_CODE["UNAUTHORIZED"], "API key revoked or expired"
                    )
        if refresh:
            await self._limits.refresh(
                [(key_id, s.conn_id) for key_id, s in keyed if s.conn_id is not None]
            )
