"""A pod reached directly holds up against clients that abuse HTTP itself (issue 13, point 5):
huge headers, headers that never finish (slowloris), and more connections than it should hold.
Real pods on the suite's Redis; every number here is kept small for a 2-core machine."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

import httpx
import pytest
import websockets

from tests.harness import Pod, spawn_pods, wait_for

PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: pod\r\nX-Slow: "


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connect(pod: Pod) -> socket.socket:
    return socket.create_connection(("127.0.0.1", pod.port), timeout=5)


def closed_by_server(sock: socket.socket, within: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), None if still open after
    ``within``. Whatever the server sent first (a 431) is read and dropped."""
    started = time.monotonic()
    sock.settimeout(0.1)
    while (waited := time.monotonic() - started) < within:
        try:
            if sock.recv(65536) == b"":
                return waited
        except TimeoutError:
            continue
        except OSError:
            return waited
    return None


def open_now(sock: socket.socket) -> bool:
    """Whether the server has not closed ``sock`` (nothing waits to be read on it)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_an_oversized_header_is_refused_without_holding_it(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1)
    with connect(pod) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: pod\r\nX-Big: " + b"a" * 200_000)
        head = sock.recv(200)
    assert head.startswith(b"HTTP/1.1 431 "), head
    assert httpx.get(pod.url + "/healthz").status_code == 200

    before = rss_mib(pod.pid)
    sent: list[int] = []

    def flood() -> None:  # one 16 MiB header, as fast as the pod takes it
        total = 0
        try:
            with connect(pod) as sock:
                sock.sendall(PARTIAL_HEAD)
                for _ in range(16):
                    sock.sendall(b"a" * (1 << 20))
                    total += 1 << 20
        except OSError:
            pass  # refused part way: what we want
        sent.append(total)

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    grown = rss_mib(pod.pid) - before
    assert grown < 8, f"4 huge headers grew the pod by {grown:.0f} MiB (sent {sent})"
    assert httpx.get(pod.url + "/healthz").status_code == 200


def append_request(size: int) -> bytes:
    """One append of about ``size`` bytes, head and body, to send in a single write."""
    data = json.dumps({"events": [{"type": "big", "data": {"pad": "x" * size}}]}).encode()
    head = (
        "POST /event-stores/limits/streams/s HTTP/1.1\r\nHost: pod\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def read_response(sock: socket.socket) -> bytes:
    """One whole response (with a Content-Length) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_large_body_sent_with_its_headers_counts_as_body(redis_url, pods):
    """Only headers count towards the limit, even when a request's head and a body larger than
    the limit arrive in one read, on a new connection or a kept-alive one."""
    (pod,) = spawn_pods(pods, redis_url, 1)
    with connect(pod) as sock:
        for size in (100_000, 200_000, 100_000):
            sock.sendall(append_request(size))
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]


def test_headers_that_never_finish_are_dropped_after_the_deadline(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_HEADER_TIMEOUT="1")
    silent = connect(pod)  # connects and says nothing
    trickling = connect(pod)
    trickling.sendall(PARTIAL_HEAD)
    kept_alive = connect(pod)  # one request answered, then the next one never finishes
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: pod\r\n\r\n")
    assert kept_alive.recv(1000).startswith(b"HTTP/1.1 200 ")
    kept_alive.sendall(PARTIAL_HEAD)

    stop = threading.Event()

    def trickle() -> None:  # a byte every 0.2 s: never idle, never done
        while not stop.wait(0.2):
            try:
                trickling.send(b"a")
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    try:
        for sock in (silent, trickling, kept_alive):
            waited = closed_by_server(sock, within=4)
            assert waited is not None, "a connection without complete headers stayed open"
        assert httpx.get(pod.url + "/healthz").status_code == 200
    finally:
        stop.set()
        for sock in (silent, trickling, kept_alive):
            sock.close()


class FewFilesPod(Pod):
    """A pod whose process may hold only ``OPEN_FILES`` descriptors (soft and hard limit), as
    containers with a low limit do: 1,100 slow clients took such a pod's /healthz down."""

    OPEN_FILES = 256

    def argv(self) -> list[str]:
        code = (
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.OPEN_FILES}, {self.OPEN_FILES})); "
            "sys.argv = ['deltagate', 'serve']; "
            "runpy.run_module('gateway.cli', run_name='__main__', alter_sys=True)"
        )
        return [sys.executable, "-c", code]


def test_healthz_answers_while_slow_clients_hold_connections(redis_url, pods):
    pod = FewFilesPod(
        {
            "DELTAGATE_REDIS_URL": redis_url,
            "DELTAGATE_AUTH": "disabled",
            "DELTAGATE_HEADER_TIMEOUT": "60",  # the deadline is not what saves /healthz here
            "DELTAGATE_MAX_PENDING_HEADERS": "64",
        }
    )
    pods.append(pod)
    pod.start()
    slow: list[socket.socket] = []
    try:
        for _ in range(FewFilesPod.OPEN_FILES + 64):  # more than the pod has descriptors
            sock = connect(pod)
            sock.sendall(PARTIAL_HEAD)
            slow.append(sock)
        for _ in range(5):  # answered, not starved (a pod out of descriptors times out)
            response = httpx.get(pod.url + "/healthz", timeout=5)
            assert response.status_code == 200
        still_open = sum(1 for sock in slow if open_now(sock))
        assert still_open <= 64 + 5, f"{still_open} slow connections still held"
    finally:
        for sock in slow:
            sock.close()


async def test_past_limit_concurrency_requests_get_503_but_probes_answer(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_LIMIT_CONCURRENCY="6")
    sockets = []
    try:
        for _ in range(6):
            sockets.append(await websockets.connect(f"{pod.ws_url}/event-stores/full/events/ws"))
        async with httpx.AsyncClient() as http:
            busy = await http.get(pod.url + "/event-stores")
            assert busy.status_code == 503
            assert busy.json()["error"] == "UNAVAILABLE"
            assert busy.headers["retry-after"] == "1"
            for probe in ("/healthz", "/readyz", "/metrics"):
                assert (await http.get(pod.url + probe)).status_code == 200, probe
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{pod.ws_url}/event-stores/full/events/ws")
        assert refused.value.response.status_code == 503
    finally:
        for ws in sockets:
            await ws.close()
    wait_for(lambda: httpx.get(pod.url + "/event-stores").status_code == 200, timeout=5)


def read_to_end(sock: socket.socket, within: float) -> tuple[bytes, bool]:
    """What the server sent on ``sock`` until it closed it (True) or ``within`` passed (False)."""
    got = bytearray()
    deadline = time.monotonic() + within
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return bytes(got), True
        if not chunk:
            return bytes(got), True
        got += chunk
    return bytes(got), False


def test_pipelined_requests_are_answered_up_to_a_bound_then_the_connection_closes(redis_url, pods):
    """HTTP/1.1 pipelining works for a client that sends a few requests ahead; one that sends
    thousands without reading the answers no longer makes the pod queue them all (each was
    parsed and held, ~1.6 KB, the pod's memory growing without end): past
    ``MAX_PIPELINED`` waiting behind the one being answered, the connection closes."""
    from gateway.server import MAX_PIPELINED

    (pod,) = spawn_pods(pods, redis_url, 1)
    request = b"GET /healthz HTTP/1.1\r\nHost: pod\r\n\r\n"
    with connect(pod) as sock:
        sock.sendall(request * 10)
        got = b""
        sock.settimeout(5)
        while got.count(b"HTTP/1.1 200 ") < 10:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {got.count(b'HTTP/1.1 200 ')} answers"
            got += chunk
        assert open_now(sock)

    with connect(pod) as sock:
        sock.sendall(request * 2000)  # 74 KB: the socket's buffers take it whole
        got, closed = read_to_end(sock, within=20)
    answers = got.count(b"HTTP/1.1 200 ")
    assert closed, f"still open after {answers} answers"
    assert answers <= MAX_PIPELINED + 1, answers
    assert httpx.get(pod.url + "/healthz").status_code == 200
