"""Security headers on every HTML page (the dashboard), not on the APIs' JSON."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Scope

from trackbook.middleware import HeadersMiddleware

PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class SecurityHeaders(HeadersMiddleware):
    def add_headers(self, scope: Scope, headers: MutableHeaders) -> None:
        # a page with a policy of its own (the API reference) keeps it
        if headers.get("content-type", "").startswith("text/html"):
            for name, value in PAGE_HEADERS.items():
                headers.setdefault(name, value)
        else:
            headers.setdefault("x-content-type-options", "nosniff")
