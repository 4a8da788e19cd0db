"""The dispatcher's HTTP side without a network: the proxy a subscription's requests go through is
read from the environment once (aiohttp's per-request lookup cost two thread hops), honouring
NO_PROXY as the standard library reads it."""

from __future__ import annotations

import pytest

from broker.webhooks.delivery import _env_proxy


def test_the_proxy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _env_proxy("http://127.0.0.1:9/hook") is None
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3129")
    assert _env_proxy("http://svc.internal/hook") == "http://127.0.0.1:3128"
    assert _env_proxy("https://svc.internal/hook") == "http://127.0.0.1:3129"
    monkeypatch.setenv("NO_PROXY", "svc.internal,.example.test")
    assert _env_proxy("http://svc.internal/hook") is None
    assert _env_proxy("https://api.example.test/hook") is None
    assert _env_proxy("https://other.test/hook") == "http://127.0.0.1:3129"
