"""Files the gateway serves as they are: the browser client (``/client/deltagate.js`` and its
types) and the demo pages under ``/demo/``. All public: they hold no data, and the pages ask the
API for events with whatever credentials their own URL carries (``?apiKey=`` or ``?token=``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, RedirectResponse, Response

from ..errors import ApiError

STATIC = Path(__file__).resolve().parent

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

# Pages (the demos, Studio) load scripts and styles from this origin only and never inline:
# even if event data reached the DOM as markup somewhere, no injected script or handler could run.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP}

router = APIRouter(include_in_schema=False)


def static_file(path: Path, media_type: str, headers: dict[str, str] | None = None) -> Response:
    """A file served as it is, revalidated on every load; ``headers`` add to the defaults."""
    try:
        found = path.is_file()
    except OSError:  # a name the file system refuses (too long): no such file either
        found = False
    if not found:
        raise ApiError("NOT_FOUND", "not found")
    return FileResponse(
        path,
        media_type=media_type,
        headers={
            # Revalidate every time (cheap with the ETag): a new gateway version's client is
            # picked up on the next page load.
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            **(headers or {}),
        },
    )


@router.api_route("/client/{name}", methods=["GET", "HEAD"])
async def client_file(name: str) -> Response:
    media_type = CLIENT_FILES.get(name)
    if media_type is None:
        raise ApiError("NOT_FOUND", f"no client file '{name}'")
    return static_file(STATIC / name, media_type, {"Access-Control-Allow-Origin": "*"})


@router.get("/demo")
async def demo_root() -> Response:
    return RedirectResponse("/demo/", status_code=307)


@router.api_route("/demo/", methods=["GET", "HEAD"])
async def demo_index() -> Response:
    return static_file(STATIC / "demo" / DEMO_PAGES[""], HTML, PAGE_HEADERS)


@router.api_route("/demo/assets/{name}", methods=["GET", "HEAD"])
async def demo_asset(name: str) -> Response:
    media_type = DEMO_ASSETS.get(name)
    if media_type is None:
        raise ApiError("NOT_FOUND", f"no demo asset '{name}'")
    return static_file(STATIC / "demo" / name, media_type)


@router.api_route("/demo/{page}", methods=["GET", "HEAD"])
async def demo_page(page: str) -> Response:
    name = DEMO_PAGES.get(page.removesuffix(".html"))
    if not page or name is None:
        raise ApiError("NOT_FOUND", f"no demo page '{page}'; try /demo/orders or /demo/balance")
    return static_file(STATIC / "demo" / name, HTML, PAGE_HEADERS)
