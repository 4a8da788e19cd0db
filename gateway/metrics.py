"""Prometheus metrics of one pod: stable names, bounded labels (never a store, key or stream id
as a label unless bounded by configuration)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events_appended = Counter(
            "deltagate_events_appended_total", "Events appended through this pod", registry=r
        )
        self.append_duration = Histogram(
            "deltagate_append_duration_seconds",
            "Time to append one batch, Redis round trip included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "deltagate_redis_errors_total",
            "Redis calls that failed (unreachable or timed out)",
            registry=r,
        )
        self.ws_connections = Gauge(
            "deltagate_ws_connections", "Open WebSocket connections", registry=r
        )
        self.ws_subscriptions = Gauge(
            "deltagate_ws_subscriptions", "Active WebSocket subscriptions", registry=r
        )
        self.ws_closes = Counter(
            "deltagate_ws_closes_total", "WebSocket closes by close code", ["code"], registry=r
        )
        self.events_delivered = Counter(
            "deltagate_events_delivered_total",
            "Event messages queued to WebSocket clients",
            ["mode"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "deltagate_delivery_latency_seconds",
            "From append (event createdAt) to the event being handed to a live WebSocket",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.demoted = Counter(
            "deltagate_ws_demoted_total",
            "Subscribers demoted to reading the log (too slow)",
            registry=r,
        )
        self.promoted = Counter(
            "deltagate_ws_promoted_total", "Subscribers promoted back to live", registry=r
        )
        self.gaps_repaired = Counter(
            "deltagate_gaps_repaired_total",
            "Events fetched from the log because pub/sub missed or reordered them",
            registry=r,
        )
        self.pubsub_reconnects = Counter(
            "deltagate_pubsub_reconnects_total",
            "Reconnections of the pod's pub/sub listener",
            registry=r,
        )
        self.head_position = Gauge(
            "deltagate_store_head_position",
            "Last globalPosition this pod has seen per store with live subscribers",
            ["store"],
            registry=r,
        )
        self.auth_failures = Counter(
            "deltagate_auth_failures_total", "Refused credentials by reason", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "deltagate_rate_limited_total", "Requests refused by rate limits", ["kind"], registry=r
        )
        self.webhook_deliveries = Counter(
            "deltagate_webhook_deliveries_total",
            "Webhook delivery attempts by result",
            ["result"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
