"""Files the gateway serves as they are: the browser client (``/client/deltagate.js`` and its
types) and the demo pages under ``/demo/``. All public: they hold no data, and the pages ask the
API for events with whatever credentials their own URL carries (``?apiKey=`` or ``?token=``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, RedirectResponse, Response

from .errors import ApiError

STATIC = Path(__file__).resolve().parent / "static"

JS = "text/javascript; charset=utf-8"
TS = "application/typescript; charset=utf-8"
HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"

CLIENT_FILES = {"deltagate.js": JS, "deltagate.d.ts": TS}
DEMO_PAGES = {"": "index.html", "orders": "orders.html", "balance": "balance.html"}
DEMO_ASSETS = {
    "orders.js": JS,
    "balance.js": JS,
    "render.js": JS,
    "demo.css": CSS,
}

# The demo pages load scripts and styles from this origin only and never inline: even if event
# data reached the DOM as markup somewhere, no injected script or handler could run.
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


def _file(path: Path, media_type: str, headers: dict[str, str] | None = None) -> Response:
    if not path.is_file():
        raise ApiError("NOT_FOUND", "not found")
    return FileResponse(
        path,
        media_type=media_type,
        headers={
            # Revalidate every time (cheap with the ETag): a new gateway version's client is
            # picked up on the next page load.
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
    )


@router.api_route("/client/{name}", methods=["GET", "HEAD"])
async def client_file(name: str) -> Response:
    media_type = CLIENT_FILES.get(name)
    if media_type is None:
        raise ApiError("NOT_FOUND", f"no client file '{name}'")
    return _file(STATIC / name, media_type, {"Access-Control-Allow-Origin": "*"})


@router.get("/demo")
async def demo_root() -> Response:
    return RedirectResponse("/demo/", status_code=307)


@router.api_route("/demo/", methods=["GET", "HEAD"])
async def demo_index() -> Response:
    return _file(STATIC / "demo" / DEMO_PAGES[""], HTML, {"Content-Security-Policy": DEMO_CSP})


@router.api_route("/demo/assets/{name}", methods=["GET", "HEAD"])
async def demo_asset(name: str) -> Response:
    media_type = DEMO_ASSETS.get(name)
    if media_type is None:
        raise ApiError("NOT_FOUND", f"no demo asset '{name}'")
    return _file(STATIC / "demo" / name, media_type)


@router.api_route("/demo/{page}", methods=["GET", "HEAD"])
async def demo_page(page: str) -> Response:
    name = DEMO_PAGES.get(page.removesuffix(".html"))
    if not page or name is None:
        raise ApiError("NOT_FOUND", f"no demo page '{page}'; try /demo/orders or /demo/balance")
    return _file(STATIC / "demo" / name, HTML, {"Content-Security-Policy": DEMO_CSP})
