"""Log redaction: credentials in query strings are caught whatever their names' spelling or
percent-encoding, in messages, extra fields and tracebacks alike."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from gateway.logs import JsonFormatter, PlainFormatter, redact

SECRET = "s3cr3t-VALUE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrZXkifQ.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "query",
    [
        f"apiKey={SECRET}",
        f"APIKEY={SECRET}",
        f"api_key={SECRET}",
        f"%61piKey={SECRET}",
        f"api%4Bey={SECRET}",
        f"%2561piKey={SECRET}",  # encoded twice
        f"token%3D{SECRET}",  # the '=' itself encoded
        f"authToken={SECRET}",
        f"x=1%26apiKey%3D{SECRET}",  # a whole parameter hidden inside another's value
        f"x=1&token={SECRET}&y=2",
        f"access_token={SECRET}",
        f"api-key%00={SECRET}",
    ],
)
def test_secret_parameters_are_redacted(query: str) -> None:
    line = f'127.0.0.1:5000 - "WebSocket /event-stores/s/events/ws?{query}" [accepted]'
    cleaned = redact(line)
    assert SECRET not in cleaned
    assert "[redacted]" in cleaned
    assert cleaned.startswith('127.0.0.1:5000 - "WebSocket /event-stores/s/events/ws?')


@pytest.mark.parametrize(
    "text",
    [
        "GET /event-stores/orders/events?type=order.*&limit=10",
        "progress 50% done",
        "a=b c=d",
        "/studio/%00",
    ],
)
def test_other_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_keys_and_jwts_are_redacted_anywhere() -> None:
    text = redact(f"key dg_{'a' * 30} and a token {JWT} in a sentence")
    assert "dg_a" not in text and JWT not in text


def record(message: str, **extra: object) -> logging.LogRecord:
    try:
        raise ValueError(f"bad request /x?apiKey={SECRET}")
    except ValueError:
        exc_info = sys.exc_info()
    entry = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, message, (), exc_info)
    entry.__dict__.update(extra)
    return entry


def test_formatters_redact_message_extras_and_traceback() -> None:
    entry = record(f"GET /x?token={JWT}", path=f"/x?%61piKey={SECRET}", client=["1.2.3.4", 5])
    line = JsonFormatter().format(entry)
    assert SECRET not in line and JWT not in line
    parsed = json.loads(line)
    assert parsed["client"] == ["1.2.3.4", 5]
    assert parsed["path"] == "/x?apiKey=[redacted]"
    plain = PlainFormatter("%(message)s").format(record(f"GET /x?api%4Bey={SECRET}"))
    assert SECRET not in plain


def test_plain_lines_carry_the_fields_json_lines_do() -> None:
    """DELTAGATE_LOG_JSON=false: a line's fields follow its message (before, a wrong Redis
    password logged only 'redis not reachable yet', the cause being a field), redacted alike."""
    line = PlainFormatter("%(levelname)s %(message)s").format(
        record(
            "redis is not safe for the log",
            problem="Redis has maxmemory-policy allkeys-lru",
            store="orders",
            retry_in=0.2,
            path=f"/x?apiKey={SECRET}",
        )
    )
    assert line.startswith("INFO redis is not safe for the log ")
    assert 'problem="Redis has maxmemory-policy allkeys-lru"' in line
    assert "store=orders" in line and "retry_in=0.2" in line
    assert SECRET not in line
