"""Security headers on every HTML page (the dashboard), not on the APIs' JSON."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                html = headers.get("content-type", "").startswith("text/html")
                # the API reference pages load FastAPI's Swagger UI and ReDoc assets
                if html and not scope["path"].startswith(("/docs", "/redoc")):
                    for name, value in PAGE_HEADERS.items():
                        headers.setdefault(name, value)
                else:
                    headers.setdefault("x-content-type-options", "nosniff")
            await send(message)

        await self.app(scope, receive, sending)
