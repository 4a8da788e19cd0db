"""deltagate's broker: the event log, positions, filters and live fan-out on Redis.

Knows nothing of HTTP or WebSockets; the gateway uses only the names exported here.
"""

from . import codec
from .errors import (
    BrokerError,
    StoreAlreadyExists,
    StoreNotFound,
    Unavailable,
    VersionConflict,
)
from .filters import Filter, FilterIndex, InvalidFilter, check_name
from .keys import valid_store_name
from .log import EventLog, EventTooLarge, InvalidEvent, LogLimits
from .redis import RedisConfig, connect
from .stores import StoreAdmin
from .types import (
    AppendResult,
    Direction,
    ExpectedVersion,
    LoggedEvent,
    NewEvent,
    Page,
    StoreInfo,
    StreamInfo,
)

__all__ = [
    "AppendResult",
    "BrokerError",
    "Direction",
    "EventLog",
    "EventTooLarge",
    "ExpectedVersion",
    "Filter",
    "FilterIndex",
    "InvalidEvent",
    "InvalidFilter",
    "LogLimits",
    "LoggedEvent",
    "NewEvent",
    "Page",
    "RedisConfig",
    "StoreAdmin",
    "StoreAlreadyExists",
    "StoreInfo",
    "StoreNotFound",
    "StreamInfo",
    "Unavailable",
    "VersionConflict",
    "check_name",
    "codec",
    "connect",
    "valid_store_name",
]
