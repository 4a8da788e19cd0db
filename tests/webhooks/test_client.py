"""The dispatcher's HTTP/1.1 client (``broker/webhooks/client.py``) against servers on 127.0.0.1
that answer in the ways a real endpoint may: chunked, ``Connection: close``, a body that runs to
the end of the connection, a long body, an interim ``100 Continue``, a truncated answer, none at
all, and over TLS. What a delivery makes of each (``lastError``) is tests/webhooks/test_targets.py's
subject; here: the status, and whether the connection is kept for the next request."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from broker.webhooks.client import BODY_LIMIT, Origin, ProtocolError
from tests.webhooks.servers import Listening, read_request

Answer = Callable[[int], bytes | None]
"""The n-th request on a connection (from 0) -> the bytes to answer it with (None: hang up)."""


class Server(Listening):
    """Answers each request (its head and Content-Length body read) with ``answer(n)``.
    ``hang_up``: close the connection after each answer. ``tls``: a server context."""

    def __init__(
        self, answer: Answer, tls: ssl.SSLContext | None = None, *, hang_up: bool = False
    ) -> None:
        super().__init__(self._answer, tls)
        self.answer = answer
        self.hang_up = hang_up

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            n = 0
            while True:
                await read_request(reader)
                answer = self.answer(n)
                n += 1
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if self.hang_up:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass


async def local(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


@pytest.fixture
async def origins() -> AsyncIterator[Callable[..., Origin]]:
    made: list[Origin] = []

    def origin(port: int, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Origin:
        made.append(Origin(host, port, tls=tls, resolve=local, limit=2, idle_seconds=15))
        return made[-1]

    yield origin
    for o in made:
        o.close()


def request(port: int) -> bytes:
    return f"POST / HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 2\r\n\r\n{{}}".encode()


async def twice(origin: Origin, port: int) -> list[int]:
    return [await origin.request(request(port), 5) for _ in range(2)]


async def test_a_keep_alive_answer_keeps_its_connection(origins: Callable[..., Origin]) -> None:
    plain = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    for answer in (plain, chunked):
        async with Server(lambda n, a=answer: a) as server:  # type: ignore[misc]
            got = await twice(origins(server.port), server.port)
            assert server.connections == 1, answer
        assert got[0] in (200, 204) and got[0] == got[1]


async def test_answers_that_end_the_connection(origins: Callable[..., Origin]) -> None:
    answers: dict[str, bytes] = {
        "connection: close": b"HTTP/1.1 503 X\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno",
        "a body to the end": b"HTTP/1.1 202 Accepted\r\nconnection: close\r\n\r\nuntil EOF",
        "HTTP/1.0": b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        "a cut body": b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",  # (the status counts)
        "a long body": b"HTTP/1.1 500 X\r\ncontent-length: %d\r\n\r\n" % (4 * BODY_LIMIT)
        + b"x" * (4 * BODY_LIMIT),
    }
    for name, answer in answers.items():
        status = int(answer.split(b" ")[1])
        async with Server(lambda n, a=answer: a, hang_up=True) as server:  # type: ignore[misc]
            assert await twice(origins(server.port), server.port) == [status, status], name
            assert server.connections == 2, f"{name}: a new connection for the second request"


async def test_an_interim_answer_is_skipped(origins: Callable[..., Origin]) -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"
    async with Server(lambda n: answer) as server:
        assert await twice(origins(server.port), server.port) == [201, 201]
        assert server.connections == 1


async def test_what_is_no_answer(origins: Callable[..., Origin]) -> None:
    cases: dict[str, tuple[bytes | None, type[Exception]]] = {
        "hang up": (None, ConnectionError),
        "a cut head": (b"HTTP/1.1 200 OK\r\ncontent-le", ConnectionError),
        "not http": (b"SSH-2.0-OpenSSH_9.6\r\n", ProtocolError),
        "switching": (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n", OSError),
    }
    for name, (answer, error) in cases.items():
        async with Server(lambda n, a=answer: a, hang_up=True) as server:  # type: ignore[misc]
            origin = origins(server.port)
            with pytest.raises(error):
                await origin.request(request(server.port), 5)
            # The pool is not left short: the next request gets a connection of its own.
            with pytest.raises(error):
                await origin.request(request(server.port), 5)
            assert server.connections == 2, name


async def test_the_deadline_covers_the_whole_request(origins: Callable[..., Origin]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with Listening(silent) as server:
        origin = origins(server.port)
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await origin.request(request(server.port), 0.2)
        assert asyncio.get_running_loop().time() - started < 1.5


async def test_at_most_limit_connections(origins: Callable[..., Origin]) -> None:
    answered = 0

    def slow(n: int) -> bytes:
        nonlocal answered
        answered += 1
        return b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"

    async with Server(slow) as server:
        origin = origins(server.port)  # limit=2
        statuses = await asyncio.gather(
            *(origin.request(request(server.port), 5) for _ in range(8))
        )
        assert statuses == [204] * 8 and answered == 8
        assert server.connections == 2


async def test_cancelling_a_request_frees_its_slot(origins: Callable[..., Origin]) -> None:
    async def first_two_never_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        mine = server.connections
        await reader.readuntil(b"\r\n\r\n")
        if mine <= 2:
            await asyncio.sleep(5)
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    async with Listening(first_two_never_answer) as server:
        origin = origins(server.port)  # limit=2
        stuck = [asyncio.create_task(origin.request(request(server.port), 5)) for _ in range(2)]
        await asyncio.sleep(0.2)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
        assert all(task.cancelled() for task in stuck)
        # Both connections were closed (what they hold is unknown), their slots given back.
        assert await origin.request(request(server.port), 5) == 204
        assert server.connections == 3


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example.com (and nothing else)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=hooks.example.com",
         "-addext", "subjectAltName=DNS:hooks.example.com",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_is_verified_against_the_host_name(
    origins: Callable[..., Origin], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
    async with Server(lambda n: answer, tls=served) as server:
        # Connected to the checked address (127.0.0.1), verified for the URL's name.
        good = origins(server.port, host="hooks.example.com", tls=trusting)
        assert await twice(good, server.port) == [204, 204]
        assert server.connections == 1
        for origin in (
            origins(server.port, host="other.example.com", tls=trusting),
            origins(server.port, host="hooks.example.com", tls=ssl.create_default_context()),
        ):
            with pytest.raises(ssl.SSLError):
                await origin.request(request(server.port), 5)


async def test_no_connection_to_what_resolve_refuses() -> None:
    asked: list[str] = []

    async def refuse(host: str, port: int) -> list[str]:
        asked.append(host)
        raise OSError("refused by the policy")

    origin = Origin("hooks.example.com", 9, tls=None, resolve=refuse, limit=1, idle_seconds=1)
    with pytest.raises(OSError, match="refused by the policy"):
        await origin.request(b"", 1)
    with pytest.raises(OSError, match="refused by the policy"):
        await origin.request(b"", 1)  # (the slot was given back)
    assert asked == ["hooks.example.com"] * 2
    origin.close()
