"""Every YAML file under k8s/: it parses, the base's objects validate against the pinned
Kubernetes version, and the kustomizations list every file they should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    BASE,
    DEV_POSTGRES,
    DEV_REDIS,
    DISPATCHER,
    K8S,
    K8S_VERSION,
    PRODUCTION,
    base_objects,
    containers,
    find,
    is_kustomization,
    kubernetes_validate_module,
    load_doc,
    load_docs,
    validate_object,
)

K8S_FILES = sorted(K8S.rglob("*.yaml")) + sorted(K8S.rglob("*.yml"))


def test_k8s_has_files() -> None:
    assert (BASE / "kustomization.yaml").exists()
    assert (PRODUCTION / "kustomization.yaml").exists()


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: str(p.relative_to(K8S)))
def test_every_k8s_yaml_document_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: apiVersion and kind missing"
        if not is_kustomization(doc):
            assert doc.get("metadata", {}).get("name"), f"{path}: metadata.name missing"


def test_pinned_kubernetes_version_is_shipped_by_the_validator() -> None:
    kubernetes_validate = kubernetes_validate_module()
    from kubernetes_validate import utils

    shipped = set(utils.all_versions())
    assert K8S_VERSION in shipped, (
        f"kubernetes-validate {kubernetes_validate.__version__} ships {sorted(shipped)}, "
        f"not {K8S_VERSION}"
    )


@pytest.mark.parametrize(
    "doc",
    base_objects(),
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_base_object_validates(doc: dict[str, Any]) -> None:
    validate_object(doc)


def test_base_kustomization_lists_every_file() -> None:
    listed = set(load_doc(BASE / "kustomization.yaml")["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, f"unlisted: {present - listed}, missing: {listed - present}"


def test_base_has_the_required_kinds() -> None:
    kinds = {d["kind"] for d in base_objects()}
    required = {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "ConfigMap",
        "Secret",
        "StatefulSet",
    }
    assert required <= kinds, f"missing {required - kinds}"
    docs = base_objects()
    assert containers(find(docs, "Deployment", DISPATCHER))[0]["command"] == [
        "deltagate",
        "dispatcher",
    ]


def test_overlay_patches_name_base_objects() -> None:
    """Each patch targets an object of the base; the dev Redis and PostgreSQL go by `$patch:
    delete`."""
    kustomization = load_doc(PRODUCTION / "kustomization.yaml")
    assert kustomization["resources"] == ["../../base"]
    docs = base_objects()
    deleted = set()
    for entry in kustomization["patches"]:
        for patch in load_docs(PRODUCTION / entry["path"]):
            kind, name = patch["kind"], patch["metadata"]["name"]
            find(docs, kind, name)
            if patch.get("$patch") == "delete":
                deleted.add((kind, name))
    assert deleted == {
        ("StatefulSet", DEV_REDIS),
        ("Service", DEV_REDIS),
        ("StatefulSet", DEV_POSTGRES),
        ("Service", DEV_POSTGRES),
    }
    listed = {entry["path"] for entry in kustomization["patches"]}
    present = {p.name for p in PRODUCTION.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, f"unused patch files: {present - listed}"
