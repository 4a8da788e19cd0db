"""Prometheus metrics of one webhook dispatcher replica (``deltagate dispatcher``), served on its
own ``/metrics``. Labels stay bounded: the result of a delivery, and for lag at most
``max_lag_series`` subscriptions (the furthest behind)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from broker import Result

from ..metrics import RedisFailures

ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RESULTS = ("success", "failure", "timeout", "dead_letter")


class DispatcherMetrics:
    """The dispatcher's ``DispatchObserver``, plus its lag read at scrape time."""

    def __init__(self, max_lag_series: int = 200) -> None:
        r = self.registry = CollectorRegistry()
        self.max_lag_series = max_lag_series
        self._attempts = _Attempts()
        r.register(self._attempts)
        r.register(RedisFailures())
        self.retries = Counter(
            "deltagate_webhook_retries_total", "Failed attempts scheduled for a retry", registry=r
        )
        self.dead_letters = Counter(
            "deltagate_webhook_dead_letters_total",
            "Events moved to a dead-letter list after their last attempt",
            registry=r,
        )

        self.history_gone_events = Counter(
            "deltagate_webhook_history_gone_events_total",
            "Positions a subscription had not delivered yet that retention deleted everywhere "
            "(past the archive, or with no archive): skipped, logged",
            registry=r,
        )

    # -- DispatchObserver ---------------------------------------------------------------------

    def attempt(self, result: Result, seconds: float) -> None:
        attempts = self._attempts
        attempts.results[result] += 1
        attempts.buckets[bisect_left(ATTEMPT_BUCKETS, seconds)] += 1
        attempts.seconds += seconds

    def retry(self) -> None:
        self.retries.inc()

    def dead_letter(self) -> None:
        self._attempts.results["dead_letter"] += 1
        self.dead_letters.inc()

    def history_gone(self, events: int) -> None:
        self.history_gone_events.inc(events)

    # -- scrape ---------------------------------------------------------------------------------

    def observe(self, dispatcher: Any) -> None:
        self.registry.register(_DispatcherCollector(dispatcher, self.max_lag_series))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Attempts:
    """Delivery attempts by result, and their durations, counted in plain numbers and read at
    scrape time: one attempt is a few additions (a prometheus_client Counter plus Histogram took
    two locks and a bucket loop, ~5 us per delivery on the bench host). Only the event loop's
    thread counts; a scrape reads numbers, never a half-made update of one."""

    def __init__(self) -> None:
        self.results = dict.fromkeys(RESULTS, 0)
        self.buckets = [0] * (len(ATTEMPT_BUCKETS) + 1)
        """Attempts per bucket (the last: above every bound), not cumulative."""
        self.seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        deliveries = CounterMetricFamily(
            "deltagate_webhook_deliveries",
            "Webhook delivery attempts by result; dead_letter counts events whose attempts ran out",
            labels=["result"],
        )
        for result, count in self.results.items():
            deliveries.add_metric([result], count)
        yield deliveries
        cumulative, total = [], 0
        for bound, count in zip((*ATTEMPT_BUCKETS, float("inf")), self.buckets, strict=True):
            total += count
            cumulative.append((floatToGoString(bound), total))
        yield HistogramMetricFamily(
            "deltagate_webhook_attempt_duration_seconds",
            "Time of one webhook request, from sending to the response status (or the failure)",
            buckets=cumulative,
            sum_value=self.seconds,
        )


class _DispatcherCollector:
    def __init__(self, dispatcher: Any, max_series: int) -> None:
        self._dispatcher = dispatcher
        self._max_series = max_series

    def collect(self) -> Iterator[Metric]:
        lags = self._dispatcher.lags()
        lag = GaugeMetricFamily(
            "deltagate_webhook_lag_events",
            "Events between a subscription's saved position and its store's head, for the "
            "subscriptions this replica delivers (at most max_lag_series, furthest behind first)",
            labels=["subscription"],
        )
        furthest = sorted(lags.items(), key=lambda item: (-item[1], item[0]))
        for (store, sub_id), behind in furthest[: self._max_series]:
            lag.add_metric([f"{store}/{sub_id}"], behind)
        yield lag
        yield GaugeMetricFamily(
            "deltagate_webhook_lag_events_max",
            "The largest lag of any subscription this replica delivers",
            value=max(lags.values(), default=0),
        )
        yield GaugeMetricFamily(
            "deltagate_webhook_subscriptions_owned",
            "Subscriptions this replica holds the lease of",
            value=len(lags),
        )
        yield GaugeMetricFamily(
            "deltagate_webhook_dispatcher_replicas",
            "Dispatcher replicas with a fresh heartbeat, as this replica last saw them",
            value=self._dispatcher.replicas,
        )
