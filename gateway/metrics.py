"""Prometheus metrics of one pod: stable names, bounded labels (never a store, key or stream id
as a label unless bounded by configuration)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.responses import Response

from broker import redis_failures

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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
        r.register(RedisFailures())
        self.ws_connections = Gauge(
            "deltagate_ws_connections", "Open WebSocket connections", registry=r
        )
        self.ws_subscriptions = Gauge(
            "deltagate_ws_subscriptions", "Active WebSocket subscriptions", registry=r
        )
        self.ws_closes = Counter(
            "deltagate_ws_closes_total", "WebSocket closes by close code", ["code"], registry=r
        )
        self.sse_connections = Gauge(
            "deltagate_sse_connections", "Open Server-Sent Events responses", registry=r
        )
        self.sse_closes = Counter(
            "deltagate_sse_closes_total",
            "SSE responses ended, by the WebSocket close code that would say why (1000: the "
            "client left, 1012: drain, 4001: credentials, 4008: slow consumer)",
            ["code"],
            registry=r,
        )
        self.budget_cuts = Counter(
            "deltagate_ws_budget_cuts_total",
            "WebSocket connections closed (4008) because the pod's queued bytes were over "
            "DELTAGATE_MAX_QUEUED_BYTES",
            registry=r,
        )
        self.delivery_latency = Histogram(
            "deltagate_delivery_latency_seconds",
            "From append to the event being queued for live WebSocket subscribers on this pod",
            buckets=LATENCY_BUCKETS,
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

    def observe_fanout(self, fanout: Any, max_stores: int = 100) -> None:
        """Export the fan-out's counters, read at scrape time (no cost per event)."""
        self.registry.register(_FanoutCollector(fanout, max_stores))

    def observe_sse(self, stats: Any) -> None:
        """Export what the pod's SSE responses delivered, read at scrape time."""
        self.registry.register(_SseCollector(stats))

    def observe_lifecycle(self, lifecycle: Any, max_stores: int = 100) -> None:
        self.registry.register(_LifecycleCollector(lifecycle, max_stores))

    def observe_redis(self, watch: Any) -> None:
        self.registry.register(_RedisCollector(watch))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def response(self) -> Response:
        """``GET /metrics``: on the main port, or on ``DELTAGATE_METRICS_PORT`` when set."""
        return Response(self.render(), media_type=CONTENT_TYPE)


class RedisFailures:
    """``deltagate_redis_errors_total``: the process's Redis calls that failed for want of
    Redis, whatever made them (``broker.redis_failures``, read at scrape time). The pod's and
    the dispatcher's ``/metrics`` both have it."""

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "deltagate_redis_errors",
            "Redis calls that failed for want of Redis (unreachable, timed out, loading, busy "
            "running a script, a Cluster moving) and pub/sub connections lost, from requests, "
            "WebSockets, SSE, probes and background work alike",
            value=redis_failures(),
        )


class _FanoutCollector:
    def __init__(self, fanout: Any, max_stores: int) -> None:
        self._fanout = fanout
        self._max_stores = max_stores

    def collect(self) -> Iterator[Metric]:
        stats = self._fanout.stats
        delivered = CounterMetricFamily(
            "deltagate_events_delivered",
            "Event messages queued to WebSocket and SSE clients, by how "
            "they were read (live from pub/sub, or replayed from the log)",
            labels=["mode"],
        )
        delivered.add_metric(["live"], stats.delivered_live)
        delivered.add_metric(["replay"], stats.delivered_replay)
        yield delivered
        for name, value, text in (
            (
                "deltagate_ws_demoted",
                stats.demoted,
                "Subscriptions demoted to reading the log because their client fell behind",
            ),
            (
                "deltagate_ws_promoted",
                stats.promoted,
                "Demoted subscriptions promoted back to live",
            ),
            (
                "deltagate_gaps_repaired",
                stats.gaps_repaired,
                "Events read from the log because pub/sub lost or reordered them",
            ),
            (
                "deltagate_pubsub_reconnects",
                self._fanout.pubsub_reconnects,
                "Times the pod's pub/sub listener lost Redis and reconnected",
            ),
        ):
            yield CounterMetricFamily(name, text, value=value)
        budget = self._fanout.budget
        for name, value, text in (
            (
                "deltagate_queued_bytes",
                budget.used,
                "Bytes this pod has queued to clients (outboxes, transport buffers, replay pages)",
            ),
            (
                "deltagate_queued_bytes_peak",
                budget.peak,
                "The most bytes this pod has had queued to clients since it started",
            ),
            (
                "deltagate_queued_bytes_limit",
                budget.limit,
                "DELTAGATE_MAX_QUEUED_BYTES: the budget for what this pod queues to clients",
            ),
        ):
            yield GaugeMetricFamily(name, text, value=value)
        healthy = GaugeMetricFamily(
            "deltagate_pubsub_healthy", "1 while the pod's pub/sub listener is connected"
        )
        healthy.add_metric([], 1.0 if self._fanout.healthy else 0.0)
        yield healthy
        heads = GaugeMetricFamily(
            "deltagate_store_head_position",
            "Last globalPosition this pod has handed to live "
            "subscribers, per store in use (at most max_stores stores)",
            labels=["store"],
        )
        for store, seen in sorted(self._fanout.heads().items())[: self._max_stores]:
            heads.add_metric([store], seen)
        yield heads


class _SseCollector:
    def __init__(self, stats: Any) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        delivered = CounterMetricFamily(
            "deltagate_sse_events_delivered",
            "Event messages queued to SSE clients (also counted in "
            "deltagate_events_delivered_total), by how they were read",
            labels=["mode"],
        )
        delivered.add_metric(["live"], self._stats.delivered_live)
        delivered.add_metric(["replay"], self._stats.delivered_replay)
        yield delivered
        yield CounterMetricFamily(
            "deltagate_sse_connections_opened",
            "SSE responses started on this pod",
            value=self._stats.opened,
        )


class _LifecycleCollector:
    """Retention and archiving as this pod does them: counters of its own work, and per store
    (at most ``max_stores``) what it last saw of the stores whose lease it holds."""

    def __init__(self, lifecycle: Any, max_stores: int) -> None:
        self._lifecycle = lifecycle
        self._max_stores = max_stores

    def collect(self) -> Iterator[Metric]:
        stats = self._lifecycle.stats
        for name, value, text in (
            ("deltagate_events_archived", stats.archived, "Events this pod copied to the archive"),
            ("deltagate_events_trimmed", stats.trimmed, "Events this pod moved out of Redis"),
            (
                "deltagate_events_deleted",
                stats.deleted,
                "Events this pod deleted for good (retention, or hot retention without archive)",
            ),
            (
                "deltagate_lifecycle_errors",
                stats.errors,
                "Rounds of retention and archiving that failed (Redis or the archive unavailable)",
            ),
        ):
            yield CounterMetricFamily(name, text, value=value)
        families = {
            "hot": GaugeMetricFamily(
                "deltagate_store_hot_events", "Events of a store in Redis", labels=["store"]
            ),
            "archived": GaugeMetricFamily(
                "deltagate_store_archived_events",
                "Events of a store in the archive",
                labels=["store"],
            ),
            "lag": GaugeMetricFamily(
                "deltagate_archive_lag_events",
                "Events of a store not yet in the archive",
                labels=["store"],
            ),
            "lag_seconds": GaugeMetricFamily(
                "deltagate_archive_lag_seconds",
                "Age of the oldest event of a store not yet in the archive",
                labels=["store"],
            ),
        }
        archiving = self._lifecycle.archiving
        for store, state in sorted(stats.stores.items())[: self._max_stores]:
            families["hot"].add_metric([store], max(0, state.head - state.low + 1))
            if archiving:
                families["archived"].add_metric([store], max(0, state.archived - state.oldest + 1))
                families["lag"].add_metric([store], max(0, state.head - state.archived))
                families["lag_seconds"].add_metric([store], state.archive_lag_seconds)
        yield from families.values()


class _RedisCollector:
    def __init__(self, watch: Any) -> None:
        self._watch = watch

    def collect(self) -> Iterator[Metric]:
        memory = self._watch.memory
        if memory is None:
            return
        yield GaugeMetricFamily(
            "deltagate_redis_memory_used_bytes", "Memory Redis uses", value=memory.used
        )
        yield GaugeMetricFamily(
            "deltagate_redis_memory_max_bytes",
            "Redis' maxmemory (0: none set)",
            value=memory.limit,
        )
        yield GaugeMetricFamily(
            "deltagate_redis_eviction_safe",
            "1 when Redis' maxmemory-policy is noeviction (log entries are never evicted)",
            value=0.0 if memory.unsafe_policy else 1.0,
        )
