"""What the client raises: :class:`DeltaGateError`, an error from deltagate (its ``{error,
message, details?}`` body) or from reaching it."""

from __future__ import annotations

from typing import Any

import httpx

STATUS_OF = {
    "VALIDATION_ERROR": 400,
    "INVALID_MESSAGE": 400,
    "LIMIT_EXCEEDED": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "EVENT_STORE_NOT_FOUND": 404,
    "RATE_LIMIT_EXCEEDED": 429,
    "UNAVAILABLE": 503,
}
"""The HTTP status of an error code, as the REST API answers it: what a refusal that came over
the live socket (an ``error`` message, a close code) carries as its ``status``."""


class DeltaGateError(Exception):
    """An error from deltagate (its ``{error, message, details?}`` body) or from reaching it.

    ``status`` is the HTTP status (None when the server could not be reached; for a refusal
    over the live socket, the status the REST API gives its code, ``STATUS_OF``); ``temporary``
    says whether the same request may succeed later (429, 503, network)."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details
        self.retry_after = retry_after

    @property
    def temporary(self) -> bool:
        return self.status is None or self.status in (429, 503)

    @classmethod
    def from_response(cls, response: httpx.Response) -> DeltaGateError:
        retry = response.headers.get("retry-after")
        retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return cls(
                body["error"],
                str(body.get("message", "")),
                response.status_code,
                body.get("details"),
                retry_after,
            )
        text = response.text.strip()[:200] or response.reason_phrase
        return cls(f"HTTP_{response.status_code}", text, response.status_code, None, retry_after)
