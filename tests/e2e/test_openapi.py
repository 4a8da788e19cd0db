"""The pod's own OpenAPI description, held to what the pod answers: schemathesis generates
requests from /openapi.json and sends them to a real pod on the suite's Redis, with auth on (the
admin key), and no answer may be a 500 nor differ from the description (status, content type,
headers, body schema, Allow). Invalid requests must be refused.

Two bounded runs (about a minute together on a quiet 2-core machine), each a fixed number of
examples per operation (raise DELTAGATE_SCHEMATHESIS_N for a deeper local run, set
DELTAGATE_SCHEMATHESIS_SEED to explore other cases):

- stateful: sequences that follow the description's links (create a store, append to it, read
  it back, mint a token, subscribe, pause, ...), every other parameter generated;
- deep: boundary values of every parameter and body (coverage), then random ones (fuzzing), with
  the path parameters naming a store with events and a webhook subscription that exist, so the
  requests reach the code behind the 404s and are answered with real events. No dispatcher runs,
  so the subscription's URL (127.0.0.1) is never called.

Not checked: ``positive_data_acceptance``: some requests valid by the schema are refused on
purpose (``DELETE`` without ``confirm=true`` is 400 CONFIRMATION_REQUIRED; a stream id with
control characters is a 400).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness import Pod, spawn_pods

ADMIN = "admin-key-for-schemathesis"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "allow_header_conformance",
        "unsupported_method",
        "missing_required_header",
        "use_after_free",
        "ensure_resource_availability",
    ]
)
EXAMPLES = os.environ.get("DELTAGATE_SCHEMATHESIS_N", "10")
SEED = os.environ.get("DELTAGATE_SCHEMATHESIS_SEED", "13")

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def pod(redis_url: str, pods: list[Pod]) -> Pod:
    (p,) = spawn_pods(
        pods,
        redis_url,
        1,
        DELTAGATE_AUTH="enabled",
        DELTAGATE_ADMIN_KEY=ADMIN,
        DELTAGATE_AUTO_CREATE_STORES="false",
        DELTAGATE_RATE_APPENDS_PER_SECOND="0",
        # The seeded subscription names 127.0.0.1 (no dispatcher runs here to call it).
        DELTAGATE_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
    )
    return p


def seed_data(pod: Pod) -> dict[str, str]:
    """A store with events (data, null data, metadata) and a webhook subscription."""
    with httpx.Client(base_url=pod.url, headers={"X-API-Key": ADMIN}) as http:
        assert http.post("/event-stores", json={"name": "orders"}).status_code == 201
        events = [
            {"type": "order.placed", "data": {"orderId": "o-1"}, "metadata": {"by": "test"}},
            {"type": "order.shipped", "data": None, "schemaVersion": 2},
        ]
        appended = http.post("/event-stores/orders/streams/s-1", json={"events": events})
        assert appended.status_code == 201, appended.text
        hook = {"type": "webhook", "config": {"url": "http://127.0.0.1:9/never-called"}}
        made = http.post(
            "/event-stores/orders/subscribe", json={"eventFilter": "order.*", "subscriber": hook}
        )
        assert made.status_code == 201, made.text
    return {"store": "orders", "stream_id": "s-1", "sub_id": made.json()["id"]}


def schemathesis(pod: Pod, tmp_path: Path, name: str, phases: str, config: str = "") -> None:
    config_file = tmp_path / f"{name}.toml"
    config_file.write_text(config)
    binary = Path(sys.executable).parent / "st"
    command = [
        str(binary),
        "--no-color",
        "--config-file",
        str(config_file),
        "run",
        f"{pod.url}/openapi.json",
        "--header",
        f"X-API-Key: {ADMIN}",
        "--checks",
        CHECKS,
        "--phases",
        phases,
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "10",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=200, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis ({name}) found problems:\n{output[-12000:]}"
    assert " passed" in output, output[-3000:]


def test_every_answer_matches_the_openapi_description(pod: Pod, tmp_path: Path) -> None:
    known = seed_data(pod)
    schemathesis(pod, tmp_path, "stateful", "stateful")
    deep = "\n".join(
        [
            "[parameters]",
            *(f'"path.{name}" = "{value}"' for name, value in known.items()),
            "",
            "[[operations]]",  # one store to delete that is not the one everything else uses
            'include-path = "/event-stores/{store}"',
            'include-method = "DELETE"',
            'parameters = { "path.store" = "doomed" }',
        ]
    )
    schemathesis(pod, tmp_path, "deep", "examples,coverage,fuzzing", deep)
    assert httpx.get(pod.url + "/readyz").status_code == 200
