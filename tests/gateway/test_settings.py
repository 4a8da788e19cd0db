"""Settings a process cannot use are refused when they are read (``gateway/settings.py``), in
one ``invalid settings`` line and exit 2 (tests/clients/test_cli.py runs that end to end), never
by a failure once the pod runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


def refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    monkeypatch.delenv(name)
    return str(caught.value)


def test_the_idempotency_ttl_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """99999999999999999 was accepted, then failed every append with a key after writing its
    events (a 500; a retry appended them again)."""
    for value in ("99999999999999999", "2592001", "0"):
        assert "idempotency_ttl_seconds" in refused(
            monkeypatch, "DELTAGATE_IDEMPOTENCY_TTL_SECONDS", value
        )
    monkeypatch.setenv("DELTAGATE_IDEMPOTENCY_TTL_SECONDS", "2592000")
    assert Settings().log_limits.idempotency_ttl == 2592000
