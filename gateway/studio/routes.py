"""Studio: the gateway's web UI (``GET /studio``), plain HTML, CSS and ES modules from
this folder with no build step.

The page itself is public: it holds no data and asks the REST API and the WebSocket for
everything with the credentials the user gives it (an API key kept in the tab's
``sessionStorage`` and sent as ``X-API-Key``; on the WebSocket a short-lived token from
``POST .../ws-tokens``). A strict Content-Security-Policy means only the Studio's own files
run: no inline script, no eval, no other origin, so even event data that somehow reached the
DOM as markup could not execute.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

from ..errors import ApiError
from ..static.routes import PAGE_HEADERS, static_file

STUDIO = Path(__file__).resolve().parent

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

router = APIRouter(include_in_schema=False)


def _file(path: Path) -> Response:
    media_type = MEDIA_TYPES.get(path.suffix)
    if media_type is None:
        raise ApiError("NOT_FOUND", "no such Studio file")
    return static_file(path, media_type, PAGE_HEADERS)


def _resolve(name: str) -> Path:
    """A file under gateway/studio/, never outside it (no ``..``, no hidden files, and no
    character a file name here never has: ``/studio/%00`` once made ``resolve()`` raise)."""
    parts = name.split("/")
    if any(
        not part or part.startswith(".") or "\\" in part or not part.isprintable() for part in parts
    ):
        raise ApiError("NOT_FOUND", "no such Studio file")
    path = STUDIO.joinpath(*parts).resolve()
    if not path.is_relative_to(STUDIO):
        raise ApiError("NOT_FOUND", "no such Studio file")
    return path


@router.api_route("/studio", methods=["GET", "HEAD"])
async def studio_index() -> Response:
    return _file(STUDIO / "index.html")


@router.api_route("/studio/", methods=["GET", "HEAD"])
async def studio_slash() -> Response:
    return RedirectResponse("/studio", status_code=307)


@router.api_route("/studio/{name:path}", methods=["GET", "HEAD"])
async def studio_file(name: str) -> Response:
    return _file(_resolve(name))
