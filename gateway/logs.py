"""Structured logs: one JSON object per line, with the fields an operator filters on."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from broker import codec

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


SECRET_NAMES = frozenset({"apikey", "token", "authtoken", "accesstoken"})
"""Query parameters that carry credentials, compared with case, punctuation and percent-encoding
taken out: ``apiKey``, ``%61piKey``, ``api%4Bey``, ``api_key``, ``token%3D...``, ``AuthToken``."""
PARAMETER = re.compile(r"[^\s?&;\"'#<>\\]+")
"""One ``name=value`` of a query string, or anything else between the characters that end one."""
SECRET_KEY = re.compile(r"dg_[A-Za-z0-9_-]{20,}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
DECODE_ROUNDS = 3
"""Percent-decoding rounds tried on a parameter (``%2561`` is ``a`` after two)."""


def _secret_name(name: str) -> bool:
    return "".join(c for c in name if c.isalnum()).lower() in SECRET_NAMES


def _redact_parameters(text: str, rounds: int = DECODE_ROUNDS) -> str:
    def one(match: re.Match[str]) -> str:
        part = match.group()
        name, equals, _ = part.partition("=")
        if equals and _secret_name(name):
            return f"{name}=[redacted]"
        if rounds and ("%" in part or "+" in part):
            decoded = unquote_plus(part)
            if decoded != part:
                cleaned = _redact_parameters(decoded, rounds - 1)
                if cleaned != decoded:
                    return cleaned  # decoded, so that what was redacted shows
        return part

    return PARAMETER.sub(one, text)


def redact(text: str) -> str:
    """Credentials never reach a log line: query parameters named like one (their names decoded
    first: a client or an attacker may percent-encode them), and anything shaped like an API key
    or a JWT wherever it stands."""
    if "=" in text or "%" in text:
        text = _redact_parameters(text)
    if "dg_" in text:
        text = SECRET_KEY.sub("dg_[redacted]", text)
    if "eyJ" in text:
        text = JWT.sub("[redacted JWT]", text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line; every string in it redacted (uvicorn logs request paths with
    their query strings: ``?apiKey=``, ``?token=``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update(
            {k: _redact_value(v) for k, v in record.__dict__.items() if k not in _STANDARD}
        )
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return codec.dumps(entry, default=str).decode()


class PlainFormatter(logging.Formatter):
    """Plain text lines, redacted like the JSON ones, with the same fields: a line's own
    (``extra``) follow its message as ``key=value``, so an operator reading text sees the
    store, the error or the policy a JSON line would name."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [(k, v) for k, v in record.__dict__.items() if k not in _STANDARD]
        if fields:
            tail = " ".join(f"{k}={_plain(v)}" for k, v in fields)
            head, newline, trace = line.partition("\n")  # (a traceback stays below the line)
            line = f"{head} {tail}{newline}{trace}"
        return redact(line)


def _plain(value: Any) -> str:
    """A field's value in a plain line: a word as it is, anything else as JSON."""
    if isinstance(value, str) and value and not any(c in value for c in ' "='):
        return value
    return codec.dumps(value, default=str).decode()


def configure(level: str = "info", json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    plain = PlainFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(JsonFormatter() if json else plain)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")
