"""The staff web page and the API docs, served from the package with no CDN.

``GET /`` is the chat page (``rag/api/static/index.html``, plain JS and CSS beside it),
``/static/…`` its files and the vendored Swagger UI and ReDoc assets
(``static/vendor/``), ``GET /docs`` and ``GET /redoc`` the API docs built on those assets.
All of these are public: they hold no data, and the page asks for the API key itself
when a data endpoint answers 401.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

#: The page's files and the vendored docs assets (shipped as package data).
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: Where :data:`STATIC_DIR` is mounted.
STATIC_URL = "/static"
VENDOR_URL = f"{STATIC_URL}/vendor"

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=FileResponse)
async def page() -> FileResponse:
    """The chat page (its scripts and styles come from ``/static``)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the vendored ``swagger-ui-dist`` bundle."""
    app = request.app
    return get_swagger_ui_html(
        openapi_url=request.scope.get("root_path", "") + (app.openapi_url or "/openapi.json"),
        title=f"{app.title} — Swagger UI",
        swagger_js_url=f"{VENDOR_URL}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR_URL}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR_URL}/swagger-ui/favicon-32x32.png",
        # no validator badge: it would fetch an image from validator.swagger.io
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc on the vendored ``redoc`` standalone bundle (no web fonts fetched)."""
    app = request.app
    return get_redoc_html(
        openapi_url=request.scope.get("root_path", "") + (app.openapi_url or "/openapi.json"),
        title=f"{app.title} — ReDoc",
        redoc_js_url=f"{VENDOR_URL}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{VENDOR_URL}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )


def install_page(app: FastAPI) -> None:
    """Add the page, the docs routes and the ``/static`` mount to ``app`` (create it with
    ``docs_url=None, redoc_url=None`` so that these docs routes are the only ones)."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
