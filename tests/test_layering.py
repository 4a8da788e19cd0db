"""The layering of the code (STYLE.md, docs/architecture.md), held by reading every module's
imports:

- ``broker/`` is a library: it imports no web framework, no WebSocket library, no metrics library
  and nothing of ``gateway``;
- ``gateway/`` uses the broker only through the names ``broker/__init__.py`` exports;
- the Python client (``clients/python/deltagate_client``) imports neither;
- no two modules import each other, directly or through others (no import circles).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import broker
from tests.harness import ROOT

CLIENT = ROOT / "clients" / "python" / "deltagate_client"
WEB = ("fastapi", "starlette", "uvicorn", "websockets", "prometheus_client", "pydantic")


def modules(folder: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in the module, wherever it is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [alias.name for alias in node.names]


BROKER = modules(ROOT / "broker", "broker")
GATEWAY = modules(ROOT / "gateway", "gateway")
CLIENT_MODULES = modules(CLIENT, "deltagate_client")


def test_the_scan_sees_the_code() -> None:
    assert "broker.fanout" in BROKER and "gateway.ws.session" in GATEWAY
    assert "deltagate_client.live" in CLIENT_MODULES


def test_broker_imports_no_web_framework_and_nothing_of_the_gateway() -> None:
    for name, path in BROKER.items():
        for module, _ in imports(name, path):
            top = module.split(".")[0]
            assert top not in (*WEB, "gateway", "deltagate_client"), f"{name} imports {module}"


def test_gateway_uses_only_what_the_broker_exports() -> None:
    exported = set(broker.__all__)
    for name, path in GATEWAY.items():
        for module, names in imports(name, path):
            if module.split(".")[0] != "broker":
                continue
            assert module == "broker", f"{name} reaches into {module}: import from broker"
            assert names, f"{name}: import broker's names, not the package"
            unknown = [n for n in names if n not in exported]
            assert not unknown, f"{name} imports {unknown}; broker/__init__.py does not export it"


def test_the_client_imports_nothing_of_the_server() -> None:
    for name, path in CLIENT_MODULES.items():
        for module, _ in imports(name, path):
            top = module.split(".")[0]
            assert top not in ("broker", "gateway"), f"{name} imports {module}"


def test_no_import_circles() -> None:
    everything = {**BROKER, **GATEWAY, **CLIENT_MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in everything.items():
        targets = set()
        for module, names in imports(name, path):
            # `from pkg import mod` names a module; `from pkg import name` the package.
            candidates = [f"{module}.{n}" for n in names if f"{module}.{n}" in everything]
            if candidates:
                targets.update(candidates)
            elif module in everything:
                targets.add(module)
        graph[name] = targets - {name}

    def cycle_from(start: str) -> list[str] | None:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*trail, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    circles = [c for c in map(cycle_from, sorted(graph)) if c is not None]
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles[:10])
