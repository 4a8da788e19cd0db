"""The base's gateway Deployment and its neighbours: drain budget, probes, hardening, wiring,
the image, the dev Redis, the Secret and the ConfigMaps."""

from __future__ import annotations

import re
from typing import Any

from tests.deploy.support import (
    BASE,
    DEV_REDIS,
    IMAGE_NAME,
    PRODUCTION,
    ROOT,
    base_objects,
    check_drain_budget,
    check_gateway_probes,
    check_gateway_wiring,
    check_hardening,
    check_metrics_port,
    config_data,
    containers,
    find,
    load_doc,
    project_version,
    setting_names,
    workloads,
)


def check_images(docs: list[dict[str, Any]], expected: str) -> None:
    images = {
        c["image"] for w in workloads(docs) for c in containers(w) if IMAGE_NAME in c["image"]
    }
    assert images == {expected}


def test_gateway_drain_budget() -> None:
    check_drain_budget(base_objects())


def test_gateway_probes() -> None:
    check_gateway_probes(base_objects())


def test_workloads_are_hardened() -> None:
    check_hardening(base_objects())


def test_gateway_wiring() -> None:
    check_gateway_wiring(base_objects())


def test_the_ingress_logs_no_query_strings() -> None:
    """ingress-nginx's access log format logs the request line with its query string (`?token=`,
    `?apiKey=`): the Ingress turns its access lines off and uses no snippet (refused by default);
    the controller-wide format docs/operations.md offers logs the path only."""
    (ingress,) = [d for d in base_objects() if d["kind"] == "Ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/enable-access-log"] == "false"
    assert not [a for a in annotations if a.endswith("-snippet")]
    docs = (ROOT / "docs" / "operations.md").read_text()
    (block,) = re.findall(r"log-format-upstream: >-\n(.*?)```", docs, re.S)
    assert '"$request_method $uri $server_protocol"' in block
    for leaky in ('"$request"', "$request_uri", "$args", "$query_string", "$http_referer"):
        assert leaky not in block, leaky


def test_metrics_have_a_port_of_their_own() -> None:
    check_metrics_port(base_objects())


def test_base_image_matches_the_project_version() -> None:
    check_images(base_objects(), f"{IMAGE_NAME}:{project_version()}")


def test_dev_redis_has_aof_and_a_headless_service() -> None:
    docs = base_objects()
    redis = find(docs, "StatefulSet", DEV_REDIS)
    (container,) = containers(redis)
    args = container["command"] + container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] in ("everysec", "always")
    assert redis["spec"]["volumeClaimTemplates"], "AOF needs a persistent volume"
    service = find(docs, "Service", DEV_REDIS)
    assert service["spec"]["clusterIP"] == "None"
    assert redis["spec"]["serviceName"] == DEV_REDIS
    assert f"//{DEV_REDIS}:6379/" in config_data(docs)["DELTAGATE_REDIS_URL"]


def test_secret_holds_only_marked_placeholders() -> None:
    secret = find(base_objects(), "Secret", "deltagate-secrets")
    assert set(secret["stringData"]) == {
        "DELTAGATE_ADMIN_KEY",
        "DELTAGATE_TOKEN_SECRET",
        "DELTAGATE_ARCHIVE_URL",
        "POSTGRES_PASSWORD",
    }
    for key, value in secret["stringData"].items():
        assert "REPLACE-ME" in value, f"{key} must hold an obvious placeholder"


def test_configmaps_only_set_known_settings() -> None:
    known = setting_names()
    for path in (BASE / "configmap.yaml", PRODUCTION / "config.yaml"):
        keys = set(load_doc(path)["data"])
        assert keys <= known, f"{path.name}: not settings of gateway/settings.py: {keys - known}"
