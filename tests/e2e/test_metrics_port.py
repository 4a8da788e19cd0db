"""DELTAGATE_METRICS_PORT on a real pod: /metrics answers there alone, the API's port says 404,
and the metrics server stops with the pod."""

from __future__ import annotations

import signal
import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Pod, free_port, spawn_pods, wait_for


def test_metrics_on_their_own_port_and_not_on_the_main_one(redis_url, pods):
    metrics_port = free_port()
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_METRICS_PORT=str(metrics_port))
    main = httpx.get(pod.url + "/metrics")
    assert main.status_code == 404
    assert main.json()["error"] == "NOT_FOUND"
    assert "/metrics" not in httpx.get(pod.url + "/openapi.json").json()["paths"]

    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name for f in text_string_to_metric_families(scraped.text)}
    assert {"deltagate_ws_connections", "deltagate_events_appended"} <= families
    for path in ("/healthz", "/event-stores", "/metrics/x"):
        assert httpx.get(f"http://127.0.0.1:{metrics_port}{path}").status_code == 404, path

    pod.signal(signal.SIGTERM)
    assert pod.proc is not None and pod.proc.wait(30) == 0, pod.log()

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", metrics_port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, timeout=5, what="the metrics port to close")


def test_a_pod_whose_metrics_port_is_taken_does_not_start(redis_url, pods):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        pod = Pod(
            {
                "DELTAGATE_REDIS_URL": redis_url,
                "DELTAGATE_AUTH": "disabled",
                "DELTAGATE_METRICS_PORT": str(port),
            }
        )
        pods.append(pod)
        pod.start(wait_ready=False)
        assert pod.proc is not None and pod.proc.wait(20) != 0
        log = pod.log()
        assert "the pod could not start" in log and "Address already in use" in log
        assert "Traceback" not in log and "never retrieved" not in log  # said in words
