"""The API reference at /docs (Swagger UI) and /redoc (ReDoc), whose assets come from the
fastapi-offline package and are served by Trackbook: a self-hosted server that works
offline loads nothing from a CDN."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/docs-assets"
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def reference_policy(page: bytes) -> str:
    """The page's Content-Security-Policy: everything from Trackbook itself, so that the
    browser, too, refuses whatever would leave for another host (ReDoc's footer links a
    logo on its vendor's CDN). Swagger UI is started by FastAPI's inline script, allowed
    by its hash; both UIs set inline styles."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = reference_policy(bytes(page.body))
    return page


def install(app: FastAPI) -> None:
    """Mounts the assets and the two pages; `app` is built with docs_url=None and
    redoc_url=None so that FastAPI's CDN-loading pages are not there."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), "docs-assets")

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"

    def spec(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=spec(request),
                title=f"{app.title} API reference",
                swagger_js_url=asset(request, "swagger-ui-bundle.js"),
                swagger_css_url=asset(request, "swagger-ui.css"),
                swagger_favicon_url=asset(request, "favicon.png"),
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _with_policy(
            get_redoc_html(
                openapi_url=spec(request),
                title=f"{app.title} API reference",
                redoc_js_url=asset(request, "redoc.standalone.js"),
                redoc_favicon_url=asset(request, "favicon.png"),
                with_google_fonts=False,
            )
        )
