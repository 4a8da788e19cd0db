"""The Python client of deltagate: an async HTTP client for the REST API (``DeltaGateClient``,
httpx) and a resuming live subscription over the WebSocket or Server-Sent Events (``Subscriber``,
websockets or httpx).

It is its own distribution (``pip install ./clients/python``) and imports nothing of the server.
"""

from .errors import DeltaGateError
from .live import (
    Event,
    Position,
    State,
    Subscriber,
    TokenSource,
    Transport,
    backoff,
    token_expiry,
    ws_base,
)
from .rest import DEFAULT_URL, DeltaGateClient

__all__ = [
    "DEFAULT_URL",
    "DeltaGateClient",
    "DeltaGateError",
    "Event",
    "Position",
    "State",
    "Subscriber",
    "TokenSource",
    "Transport",
    "backoff",
    "token_expiry",
    "ws_base",
]
