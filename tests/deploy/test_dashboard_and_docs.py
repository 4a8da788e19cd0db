"""The Grafana dashboard queries only metrics the pod exports, and docs/operations.md names every
setting and metric family."""

from __future__ import annotations

import json
import re

from broker import QueueBudget
from gateway.metrics import Metrics
from tests.deploy.support import DEPLOY, ROOT, setting_names


class _AnyStats:
    def __getattr__(self, name: str) -> int:
        return 0


class _IdleFanout:
    """Enough of the fan-out for Metrics.observe_fanout to list the families it exports."""

    stats = _AnyStats()
    healthy = True
    pubsub_reconnects = 0
    budget = QueueBudget(1 << 20)

    def heads(self) -> dict[str, int]:
        return {}


class _IdleLifecycle:
    """Enough of the lifecycle (one store seen) for its families to be listed."""

    archiving = True

    def __init__(self) -> None:
        from broker.lifecycle import LifecycleStats, StoreState

        self.stats = LifecycleStats(stores={"s": StoreState()})


class _IdleWatch:
    from broker import Memory

    memory = Memory(used=1, limit=2, policies=("noeviction",))


def pod_metrics() -> Metrics:
    metrics = Metrics()
    metrics.observe_fanout(_IdleFanout())
    metrics.observe_lifecycle(_IdleLifecycle())
    metrics.observe_redis(_IdleWatch())
    return metrics


def test_alert_rules_query_only_metrics_the_pods_export() -> None:
    from tests.deploy.support import BASE, load_doc

    series = set().union(*metric_series().values())
    rule = load_doc(BASE / "prometheusrule.yaml")
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            names = set(re.findall(r"\bdeltagate_[a-z_]+", alert["expr"]))
            assert names and names <= series, f"{alert['alert']}: unknown {names - series}"


def metric_series() -> dict[str, set[str]]:
    """Each family of gateway/metrics.py with the series names Prometheus stores for it."""
    suffixes = {
        "counter": {"_total"},
        "gauge": {""},
        "histogram": {"_bucket", "_sum", "_count"},
        "summary": {"_sum", "_count", ""},
    }
    return {
        family.name + ("_total" if family.type == "counter" else ""): {
            family.name + suffix for suffix in suffixes[family.type]
        }
        for family in pod_metrics().registry.collect()
    }


def test_grafana_dashboard() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    series = set().union(*metric_series().values())
    used: set[str] = set()
    ids = set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["targets"], f"panel {panel['title']} has no query"
        for target in panel["targets"]:
            names = set(re.findall(r"\bdeltagate_[a-z_]+", target["expr"]))
            assert names <= series, f"{panel['title']}: unknown metrics {names - series}"
            used |= names
    wanted = {
        "deltagate_ws_connections",
        "deltagate_ws_subscriptions",
        "deltagate_events_appended_total",
        "deltagate_append_duration_seconds_bucket",
        "deltagate_events_delivered_total",
        "deltagate_delivery_latency_seconds_bucket",
        "deltagate_redis_errors_total",
        "deltagate_ws_demoted_total",
        "deltagate_ws_promoted_total",
        "deltagate_gaps_repaired_total",
        "deltagate_webhook_deliveries_total",
    }
    assert wanted <= used, f"the dashboard lacks {wanted - used}"


def test_operations_doc_covers_settings_and_metrics() -> None:
    """docs/operations.md names every setting of gateway/settings.py and every metric family of
    gateway/metrics.py: add a line there when you add one here."""
    text = (ROOT / "docs" / "operations.md").read_text()
    missing_settings = {name for name in setting_names() if f"`{name}`" not in text}
    assert not missing_settings, f"docs/operations.md does not document {missing_settings}"
    missing_metrics = {name for name in metric_series() if f"`{name}`" not in text}
    assert not missing_metrics, f"docs/operations.md does not document {missing_metrics}"
    for phrase in ("appendfsync everysec", "appendfsync always", "/healthz", "/readyz", "1012"):
        assert phrase in text, f"docs/operations.md should mention {phrase!r}"


def test_the_durability_section_tells_of_waiting_for_replicas() -> None:
    """It said "this version has no setting that makes appends wait for replicas" while the
    settings table documented DELTAGATE_APPEND_WAIT_REPLICAS, which does that."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    durability = doc.split("\n## Durability\n", 1)[1].split("\n## ", 1)[0]
    assert "no setting that makes appends" not in durability
    assert "`DELTAGATE_APPEND_WAIT_REPLICAS`" in durability
    assert "`DELTAGATE_APPEND_WAIT_TIMEOUT_MS`" in durability
