"""deploy/compose.yaml with the nginx in front of the gateways and Prometheus scraping them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import Settings
from tests.deploy.support import CI, DEPLOY, IMAGE_NAME, load_doc, project_version, setting_names

COMPOSE = DEPLOY / "compose.yaml"
GATEWAY_SERVICES = ["gateway-1", "gateway-2", "gateway-3"]


def compose_services() -> dict[str, Any]:
    return load_doc(COMPOSE)["services"]


def duration_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, f"unexpected duration {text!r}"
    return float(match[1]) * (60 if match[2] == "m" else 1)


def test_compose_services() -> None:
    services = compose_services()
    assert set(services) >= {"redis", *GATEWAY_SERVICES, "dispatcher", "nginx", "prometheus"}

    redis = services["redis"]
    assert re.fullmatch(r"redis:7\.[\d.]+(-alpine)?", redis["image"])
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(v.endswith(":/data") for v in redis["volumes"]), "AOF needs a volume"

    image = f"{IMAGE_NAME}:{project_version()}"
    for name in GATEWAY_SERVICES:
        gateway = services[name]
        env = gateway["environment"]
        assert gateway["image"] == image
        assert gateway["build"]["dockerfile"] == "deploy/Dockerfile"
        assert env["DELTAGATE_REDIS_URL"] == "redis://redis:6379/0"
        assert re.fullmatch(r"\$\{DELTAGATE_ADMIN_KEY:-[^}]+\}", env["DELTAGATE_ADMIN_KEY"])
        grace = float(env.get("DELTAGATE_GRACE_PERIOD", 30))
        assert duration_seconds(gateway["stop_grace_period"]) > grace
        assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "ports" not in gateway, "gateways are reached through nginx only"

    dispatcher = services["dispatcher"]
    assert dispatcher["command"] == ["deltagate", "dispatcher"]
    assert dispatcher["image"] == image
    assert dispatcher["environment"]["DELTAGATE_REDIS_URL"] == "redis://redis:6379/0"

    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
    assert "8787:8787" in services["nginx"]["ports"]
    assert any(v.startswith("./prometheus.yml:") for v in services["prometheus"]["volumes"])


def test_compose_sets_only_known_settings() -> None:
    known = setting_names()
    for name, service in compose_services().items():
        keys = {k for k in service.get("environment", {}) if k.startswith("DELTAGATE_")}
        assert keys <= known, f"{name}: not settings of gateway/settings.py: {keys - known}"


NGINX = DEPLOY / "nginx.conf"


def nginx_directives() -> list[list[str]]:
    lines = []
    for raw in NGINX.read_text().splitlines():
        line = raw.split("#", 1)[0].strip().rstrip(";").strip()
        if line and line not in ("}", "{"):
            lines.append(shlex.split(line.rstrip("{").strip()))
    return lines


def test_nginx_proxies_websockets_with_long_timeouts() -> None:
    directives = nginx_directives()
    text = NGINX.read_text()

    def values(name: str) -> list[list[str]]:
        return [d[1:] for d in directives if d[0] == name]

    assert ["$http_upgrade", "$connection_upgrade"] in values("map")
    assert ["Upgrade", "$http_upgrade"] in values("proxy_set_header")
    assert ["Connection", "$connection_upgrade"] in values("proxy_set_header")
    assert values("proxy_http_version") == [["1.1"]]
    assert values("proxy_buffering") == [["off"]]
    assert values("listen") == [["8787"]]
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = values(name)
        assert duration_seconds(value[0]) >= 3600, f"{name} too short"
    servers = [v[0] for v in values("server") if v]  # `server host:port` in the upstream
    assert servers == [f"{name}:8787" for name in GATEWAY_SERVICES]
    assert "proxy_pass http://deltagate" in text


def test_nginx_accepts_its_config(tmp_path: Path) -> None:
    """`nginx -t` on the config, the compose host names swapped for 127.0.0.1 (nginx resolves
    upstream names while loading)."""
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        pytest.skip(
            "optional tool absent: nginx is not installed, its syntax check is skipped"
            + (" [CI: optional, not a failure]" if CI else "")
        )
    config = tmp_path / "nginx.conf"
    text = NGINX.read_text()
    for name in GATEWAY_SERVICES:
        text = text.replace(f"{name}:8787", "127.0.0.1:8787")
    config.write_text(text.replace("pid /tmp/nginx.pid", f"pid {tmp_path}/nginx.pid"))
    result = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_prometheus_scrapes_every_gateway_and_the_dispatcher() -> None:
    """Gateways on their DELTAGATE_METRICS_PORT (their API port, which nginx proxies, answers
    404 for /metrics), the dispatcher on DELTAGATE_DISPATCHER_PORT."""
    config = load_doc(DEPLOY / "prometheus.yml")
    targets = {
        target: job
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    services = compose_services()
    defaults = Settings.model_fields
    for name in [*GATEWAY_SERVICES, "dispatcher"]:
        env = services[name]["environment"]
        if name == "dispatcher":
            port = env.get("DELTAGATE_DISPATCHER_PORT", defaults["dispatcher_port"].default)
        else:
            port = env["DELTAGATE_METRICS_PORT"]
            assert str(port) in services[name]["expose"]
            assert f"{name}:{port}" not in nginx_directives_text(), "nginx must not proxy it"
        assert f"{name}:{port}" in targets, f"{name} is not scraped on port {port}"
        assert targets[f"{name}:{port}"].get("metrics_path", "/metrics") == "/metrics"
    assert set(services) >= {t.split(":")[0] for t in targets}


def nginx_directives_text() -> str:
    return " ".join(" ".join(d) for d in nginx_directives())
