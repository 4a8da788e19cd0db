"""The broker is a library: nothing in ``broker/`` imports the gateway, an HTTP framework or a
WebSocket library (STYLE.md). The dispatcher's HTTP client (httpx) is the one outside tie."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.harness import ROOT

FORBIDDEN = ("gateway", "fastapi", "starlette", "uvicorn", "websockets", "prometheus_client")


def test_broker_imports_no_framework() -> None:
    for path in sorted((ROOT / "broker").glob("*.py")):
        for node in ast.walk(ast.parse(Path(path).read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_webhook_keys_are_built_in_keys_py() -> None:
    """No Redis key of a subscription is spelled outside broker/keys.py."""
    for name in ("webhooks.py", "dispatcher.py"):
        text = (ROOT / "broker" / name).read_text()
        assert '"dg:' not in text and 'f"{PREFIX}' not in text, name
