"""Browsers on the routes that record events: who may call them, and CORS.

Publishable keys sit in web pages, so only the ingest routes answer browsers from
other origins: a preflight (which carries no key) is allowed for origins some live
publishable key accepts; an actual request gets the origin echoed back only when its
publishable key accepts that origin (Authenticator.authenticate_ingest). Every other
route sends no CORS headers at all, so a browser never lets a page read them.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackbook.accounts.service import Account
from trackbook.contacts.identity import Credential
from trackbook.dialects.responses import ErrorReply, render_error
from trackbook.services import Services

INGEST_PATHS = re.compile(r"^(/segment/.*|/v1/(track|identify|batch)|/api/v1/event)$")
"""The routes a publishable key may call: every Segment route, native track, identify
and batch, Octeth's event route (`/api.php` also serves reads, so it stays closed to
browsers)."""
STATE_KEY = "cors_origin"
PUBLISHABLE_KEY = "publishable"
PREFLIGHT_MAX_AGE = "600"


async def ingest_account(request: Request, services: Services, secret: str | None) -> Account:
    """The account of `secret` on a route that records events: secret and publishable
    keys both, a publishable one only from an origin it accepts."""
    caller = await services.auth.authenticate_ingest(secret, origin=request.headers.get("origin"))
    if caller.cors_origin is not None:
        setattr(request.state, STATE_KEY, caller.cors_origin)
    setattr(request.state, PUBLISHABLE_KEY, caller.publishable)
    return caller.account


def by_publishable_key(request: Request) -> bool:
    """Whether ingest_account let this request in on a publishable key: its answer may
    then say nothing of what the account holds (no contact ids, no contact data)."""
    return bool(getattr(request.state, PUBLISHABLE_KEY, False))


def credential_of(request: Request, source: str) -> Credential:
    """The powers of the key this request came with, as the contacts core takes them."""
    return Credential(source, publishable=by_publishable_key(request))


class IngestCors:
    """Answers preflights on the ingest routes and puts the allowed origin on answers."""

    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not INGEST_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if (
            scope["method"] == "OPTIONS"
            and origin is not None
            and "access-control-request-method" in headers
        ):
            answer = await self._preflight(scope["path"], origin, headers)
            await answer(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer = MutableHeaders(scope=message)
                answer.add_vary_header("Origin")
                allowed = (scope.get("state") or {}).get(STATE_KEY)
                if allowed is not None:
                    answer["Access-Control-Allow-Origin"] = allowed
            await send(message)

        await self.app(scope, receive, sending)

    async def _preflight(self, path: str, origin: str, headers: Headers) -> Response:
        method = headers["access-control-request-method"].upper()
        if method != "POST" or not await self.services.auth.allows_browser_origin(origin):
            reply = ErrorReply(
                403,
                "origin_not_allowed",
                f"no publishable key accepts {method} requests from the origin {origin!r}",
                headers={"Vary": "Origin"},
            )
            return render_error(path, reply)
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                "Vary": "Origin",
            },
        )
