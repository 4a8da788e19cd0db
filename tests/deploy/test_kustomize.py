"""Base and production overlay as kustomize renders them (an optional tool: skipped when
absent), held to the same checks as the source manifests."""

from __future__ import annotations

from typing import Any

from tests.deploy.support import (
    BASE,
    DEV_REDIS,
    GATEWAY,
    IMAGE_NAME,
    PRODUCTION,
    check_drain_budget,
    check_gateway_probes,
    check_gateway_wiring,
    check_hardening,
    check_metrics_port,
    config_data,
    containers,
    cpu_millis,
    find,
    mem_bytes,
    project_version,
    render,
    validate_object,
    workloads,
)


def test_kustomize_renders_base() -> None:
    docs = render(BASE)
    for doc in docs:
        validate_object(doc)
    assert {d["kind"] for d in docs} >= {"StatefulSet", "ServiceMonitor"}
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "deltagate" for d in docs)
    check_drain_budget(docs)
    check_gateway_probes(docs)
    check_metrics_port(docs)


def test_kustomize_renders_production_overlay() -> None:
    docs = render(PRODUCTION)
    for doc in docs:
        validate_object(doc)
    base = render(BASE)
    assert not [d for d in docs if d["kind"] == "StatefulSet"], "production runs no Redis"
    assert not [d for d in docs if d["metadata"]["name"] == DEV_REDIS]
    config = config_data(docs)
    assert DEV_REDIS not in config["DELTAGATE_REDIS_URL"]
    assert config["DELTAGATE_REDIS_URL"].startswith(("redis://", "rediss://"))
    assert "DELTAGATE_REDIS_MODE: cluster" in (PRODUCTION / "config.yaml").read_text()

    def gateway_of(rendered: list[dict[str, Any]]) -> dict[str, Any]:
        return find(rendered, "Deployment", GATEWAY)

    assert gateway_of(docs)["spec"]["replicas"] > gateway_of(base)["spec"]["replicas"]
    hpa = find(docs, "HorizontalPodAutoscaler", GATEWAY)["spec"]
    assert hpa["minReplicas"] >= gateway_of(base)["spec"]["replicas"]
    assert hpa["maxReplicas"] > hpa["minReplicas"]
    prod_res = containers(gateway_of(docs))[0]["resources"]
    base_res = containers(gateway_of(base))[0]["resources"]
    for tier in ("requests", "limits"):
        assert cpu_millis(prod_res[tier]["cpu"]) > cpu_millis(base_res[tier]["cpu"])
        assert mem_bytes(prod_res[tier]["memory"]) > mem_bytes(base_res[tier]["memory"])
    images = {c["image"] for w in workloads(docs) for c in containers(w)}
    assert len(images) == 1 and next(iter(images)).endswith(f"/{IMAGE_NAME}:{project_version()}")
    check_drain_budget(docs)
    check_gateway_probes(docs)
    check_hardening(docs)
    check_gateway_wiring(docs)
    check_metrics_port(docs)
