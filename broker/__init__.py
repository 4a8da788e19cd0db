"""deltagate's broker: the event log, positions, filters, live fan-out and webhook delivery on
Redis, as a library.

Knows nothing of HTTP servers or WebSockets (the webhook sender is an HTTP *client*); the gateway
and the CLI use only the names exported here, and a test holds that rule (tests/test_layering.py).

The data path, by module: an append is ``log.EventLog.append`` running ``scripts/append.lua``, which
writes the log and announces the events on the store's channel; ``pubsub.Listener`` hears it in
every pod; ``fanout.Fanout`` hands it to the matching ``LiveSubscription``s (gap repair and
catch-up read ``pages.PageReader``); each subscription's ``Sink`` is the gateway's WebSocket
session. Webhooks follow the same log through ``webhooks.Dispatcher`` (the ``webhooks`` package).
"""

from . import codec
from .aio import cancel_and_wait
from .apikeys import MAX_KEY_TTL_SECONDS, ApiKey, KeyStore, hash_secret
from .archive import Archive
from .backup import Importer, ImportRejected
from .budget import FLOOR as BUDGET_FLOOR
from .budget import QueueBudget
from .errors import (
    BrokerError,
    ConditionFailed,
    EventTooLarge,
    InvalidEvent,
    InvalidFilter,
    InvalidSettings,
    InvalidSubscriptionBody,
    InvalidSubscriptionConfig,
    NotReplicated,
    RateLimited,
    RedisRefused,
    StorageFull,
    StoreAlreadyExists,
    StoreNotFound,
    SubscriptionNotFound,
    TooManyPatterns,
    Unavailable,
    VersionConflict,
)
from .fanout import Fanout, LiveSubscription, Marker, Reset, Sink, Subscribed
from .filters import (
    Content,
    Filter,
    FilterIndex,
    Query,
    QueryItem,
    check_name,
    check_pattern,
    check_tags,
)
from .health import (
    SAFE_POLICY,
    Memory,
    RedisWatch,
    eviction_problem,
    nodes_info,
    policy_problem,
)
from .keys import DCB_STREAM, valid_store_name
from .lifecycle import Lifecycle, LifecycleOptions
from .limits import RateLimiter
from .log import MAX_IDEMPOTENCY_TTL, EventLog, LogLimits
from .query import EventCheck, StreamCheck
from .reader import Slice, StreamOrder, StreamSlice, check_version
from .redis import RedisConfig, connect, first_contact, ping, redis_failures
from .stores import MAX_HOT_SECONDS, StoreAdmin, check_settings
from .types import (
    MAX_POSITION,
    AppendResult,
    Direction,
    ExpectedVersion,
    LoggedEvent,
    NewEvent,
    Page,
    StartPosition,
    StoreInfo,
    StreamInfo,
    TimeStart,
    now_iso,
    parse_instant,
    parse_start,
)
from .webhooks import (
    REQUEST_SCHEMA as SUBSCRIPTION_REQUEST_SCHEMA,
)
from .webhooks import (
    Dispatcher,
    DispatcherOptions,
    Result,
    SubscriptionRequest,
    TargetPolicy,
    WebhookConfig,
    WebhookStore,
    WebhookSubscription,
    parse_networks,
    parse_schedule,
)
from .webhooks import check_position as check_webhook_position
from .webhooks import parse as parse_subscription

__all__ = [
    "BUDGET_FLOOR",
    "DCB_STREAM",
    "MAX_HOT_SECONDS",
    "MAX_IDEMPOTENCY_TTL",
    "MAX_KEY_TTL_SECONDS",
    "MAX_POSITION",
    "SAFE_POLICY",
    "SUBSCRIPTION_REQUEST_SCHEMA",
    "ApiKey",
    "AppendResult",
    "Archive",
    "BrokerError",
    "ConditionFailed",
    "Content",
    "Direction",
    "Dispatcher",
    "DispatcherOptions",
    "EventCheck",
    "EventLog",
    "EventTooLarge",
    "ExpectedVersion",
    "Fanout",
    "Filter",
    "FilterIndex",
    "ImportRejected",
    "Importer",
    "InvalidEvent",
    "InvalidFilter",
    "InvalidSettings",
    "InvalidSubscriptionBody",
    "InvalidSubscriptionConfig",
    "KeyStore",
    "Lifecycle",
    "LifecycleOptions",
    "LiveSubscription",
    "LogLimits",
    "LoggedEvent",
    "Marker",
    "Memory",
    "NewEvent",
    "NotReplicated",
    "Page",
    "Query",
    "QueryItem",
    "QueueBudget",
    "RateLimited",
    "RateLimiter",
    "RedisConfig",
    "RedisRefused",
    "RedisWatch",
    "Reset",
    "Result",
    "Sink",
    "Slice",
    "StartPosition",
    "StorageFull",
    "StoreAdmin",
    "StoreAlreadyExists",
    "StoreInfo",
    "StoreNotFound",
    "StreamCheck",
    "StreamInfo",
    "StreamOrder",
    "StreamSlice",
    "Subscribed",
    "SubscriptionNotFound",
    "SubscriptionRequest",
    "TargetPolicy",
    "TimeStart",
    "TooManyPatterns",
    "Unavailable",
    "VersionConflict",
    "WebhookConfig",
    "WebhookStore",
    "WebhookSubscription",
    "cancel_and_wait",
    "check_name",
    "check_pattern",
    "check_settings",
    "check_tags",
    "check_version",
    "check_webhook_position",
    "codec",
    "connect",
    "eviction_problem",
    "first_contact",
    "hash_secret",
    "nodes_info",
    "now_iso",
    "parse_instant",
    "parse_networks",
    "parse_schedule",
    "parse_start",
    "parse_subscription",
    "ping",
    "policy_problem",
    "redis_failures",
    "valid_store_name",
]
