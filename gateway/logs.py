"""Structured logs: one JSON object per line, with the fields an operator filters on."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

from broker import codec

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


SECRET_IN_QUERY = re.compile(r"((?:apiKey|token|authToken)=)[^&\s\"']+", re.IGNORECASE)
SECRET_KEY = re.compile(r"dg_[A-Za-z0-9_-]{20,}")


def redact(text: str) -> str:
    """Credentials never reach a log line: query-string secrets and anything shaped like a key."""
    return SECRET_KEY.sub("dg_[redacted]", SECRET_IN_QUERY.sub(r"\1[redacted]", text))


class RedactSecrets(logging.Filter):
    """uvicorn logs request paths, query strings included (``?apiKey=``, ``?token=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return codec.dumps(entry, default=str).decode()


def configure(level: str = "info", json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(JsonFormatter() if json else plain)
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")
