"""Webhook subscriptions: the broker's side of contract section 4, as a package.

Read the modules in this order to follow an event from a subscription's creation to its endpoint:

- ``request``: a subscribe body (either form) checked against one table of fields, the one
  place a subscription is validated (with ``config`` for the values);
- ``config``: ``WebhookConfig`` (filter, URL, headers, timeout, retry policy), the duplicate rule;
- ``signing``: ``whsec_`` secrets and the Standard Webhooks signature;
- ``records``: the subscription record and its Redis layout;
- ``store``: ``WebhookStore``, what the API does to subscriptions (create, list, pause,
  dead letters, redrive, delete);
- ``progress``: ``ProgressStore``, what the dispatcher reads and writes (progress, failures,
  dead letters), every write fenced by the subscription's lease;
- ``dispatcher``: ``Dispatcher``, membership, fair share, leases and the pub/sub doorbell;
- ``worker``: ``Worker``, one subscription's loop: read, send, record outcomes, save progress;
- ``tail``: a worker's read side, following the log (and the announcements) after its cursor;
- ``window``: the read window and per-stream ordering;
- ``retry``: when a failed attempt is tried again, and when it becomes a dead letter;
- ``delivery``: one signed POST and what came of it;
- ``targets``: which addresses webhooks may reach, checked at declaration and at every
  connection (the SSRF guard).
"""

from .config import WebhookConfig, check_id, check_position, check_secret
from .delivery import Result
from .dispatcher import Dispatcher
from .options import DispatcherOptions, DispatchObserver
from .progress import ProgressStore
from .records import Created, DeliveryState, WebhookSubscription
from .request import REQUEST_SCHEMA, SubscriptionRequest, parse
from .retry import RetryPolicy, parse_schedule, retry_delay
from .signing import new_secret, secret_key, signature
from .store import WebhookStore
from .targets import TargetPolicy, parse_networks

__all__ = [
    "REQUEST_SCHEMA",
    "Created",
    "DeliveryState",
    "DispatchObserver",
    "Dispatcher",
    "DispatcherOptions",
    "ProgressStore",
    "Result",
    "RetryPolicy",
    "SubscriptionRequest",
    "TargetPolicy",
    "WebhookConfig",
    "WebhookStore",
    "WebhookSubscription",
    "check_id",
    "check_position",
    "check_secret",
    "new_secret",
    "parse",
    "parse_networks",
    "parse_schedule",
    "retry_delay",
    "secret_key",
    "signature",
]
