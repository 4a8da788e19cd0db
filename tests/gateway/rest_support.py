"""Helpers for the REST tests (importable: the fixtures live in conftest.py)."""

from __future__ import annotations

import warnings
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # starlette asks for httpx2 at import; the project depends on httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = ["PREFIXES", "TestClient", "append", "assert_error", "error_fields", "head"]

PREFIXES = ["/event-stores", "/api/event-stores"]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The contract's error body: ``{error, message, details?}`` and nothing else."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"error", "message", "details"}, body
    assert "Traceback" not in response.text
    return body


def error_fields(body: dict[str, Any]) -> list[str]:
    """The fields a VALIDATION_ERROR lists."""
    details = body["details"]
    assert isinstance(details, list) and details, body
    for item in details:
        assert isinstance(item["field"], str) and isinstance(item["message"], str)
    return [item["field"] for item in details]


def head(client: TestClient, store: str) -> int:
    response = client.get(f"/event-stores/{store}")
    assert response.status_code == 200, response.text
    stats = response.json()["statistics"]
    assert stats["totalEvents"] == stats["headPosition"]
    return int(stats["headPosition"])


def append(
    client: TestClient,
    store: str,
    stream_id: str,
    *events: dict[str, Any],
    base: str = "/event-stores",
    **body: Any,
) -> Any:
    payload = {"events": list(events) or [{"type": "order.created", "data": {}}], **body}
    return client.post(f"{base}/{store}/streams/{stream_id}", json=payload)
