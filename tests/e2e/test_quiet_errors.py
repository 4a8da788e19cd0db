"""What a client gets wrong stays a quiet, small answer on a real pod: no 500 and no traceback in
the pod's log for odd paths under /studio, nor for a client that goes away mid-body."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import Pod, RedisServer, spawn_pods, wait_for


@pytest.fixture(scope="module")
def pod(redis_server: RedisServer) -> Iterator[Pod]:
    """One pod for the module: each test only reads its log for what it caused."""
    redis_server.client().flushall()
    started: list[Pod] = []
    try:
        (only,) = spawn_pods(started, redis_server.url, 1, DELTAGATE_LOG_LEVEL="debug")
        yield only
    finally:
        for each in started:
            each.stop()


def quiet(log: str) -> None:
    assert "Traceback" not in log, log[-3000:]
    assert "unhandled error" not in log, log[-3000:]
    assert '"level":"error"' not in log, log[-3000:]


@pytest.mark.parametrize(
    "path",
    [
        "/studio/%00",
        "/studio/js/%00.js",
        "/studio/x%0a.js",
        "/studio/%7f.css",
        "/studio/" + "a" * 300 + ".js",  # longer than a file name may be
        "/client/%00",
        "/demo/%00",
        "/demo/assets/%00",
    ],
)
def test_odd_static_paths_are_a_plain_404(pod: Pod, path: str) -> None:
    for method in ("GET", "HEAD"):
        response = httpx.request(method, pod.url + path)
        assert response.status_code == 404, (method, path, response.text)
        if method == "GET":
            assert response.json()["error"] == "NOT_FOUND"
    quiet(pod.log_path.read_text())


def test_a_client_gone_mid_body_is_no_error(pod: Pod) -> None:
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", pod.port)) as sock:
            sock.sendall(
                b"POST /event-stores/quiet/streams/s HTTP/1.1\r\nHost: pod\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                b'{"events": [{"type": "a", '
            )
            time.sleep(0.2)  # the pod is reading the body now
    wait_for(
        lambda: pod.log_path.read_text().count("client went away before its request body") == 3,
        timeout=5,
        what="a debug line per request",
    )
    assert httpx.get(pod.url + "/healthz").status_code == 200
    quiet(pod.log_path.read_text())
