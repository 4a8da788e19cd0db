"""What one gateway pod holds while it runs: its settings, Redis client and broker objects.

Built by the app's lifespan and reached by routes through ``runtime(request)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from broker import EventLog, StoreAdmin
from broker.apikeys import KeyStore
from broker.fanout import Hub

from .auth import Authenticator
from .limits import RateLimiter
from .metrics import Metrics
from .settings import Settings

if TYPE_CHECKING:
    from .ws import Sessions


@dataclass
class Runtime:
    settings: Settings
    redis: Any
    log: EventLog
    stores: StoreAdmin
    metrics: Metrics
    auth: Authenticator
    keys: KeyStore
    limits: RateLimiter
    hub: Hub
    sessions: Sessions
    draining: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


async def runtime(conn: HTTPConnection) -> Runtime:
    """A FastAPI dependency. Async on purpose: a plain ``def`` dependency runs in a worker
    thread, which cost a thread hop per request."""
    return runtime_of(conn)


def runtime_of(conn: HTTPConnection) -> Runtime:
    return conn.app.state.runtime  # type: ignore[no-any-return]
