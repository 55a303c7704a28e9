"""WordPress without pretty permalinks serves its REST API as `/?rest_route=/...`
(capture 31): the same FluentCRM routes, reached through the site's front page."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

REST_ROUTE = "/fluent-crm/v2"
REWRITTEN = "trackbook.rest_route"
"""Scope key set on a request that came in as `?rest_route=`."""


def rewritten(scope: Scope) -> Scope | None:
    """The request as WordPress routes it: `/?rest_route=/fluent-crm/v2/x&page=2` is
    `/wp-json/fluent-crm/v2/x?page=2`; None when the query names no FluentCRM route."""
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    route = next((value for key, value in query if key == "rest_route"), "")
    if route != REST_ROUTE and not route.startswith(REST_ROUTE + "/"):
        return None
    path = "/wp-json" + route
    rest = urlencode([(key, value) for key, value in query if key != "rest_route"])
    return {
        **scope,
        "path": path,
        "raw_path": quote(path).encode(),
        "query_string": rest.encode(),
        REWRITTEN: True,
    }


class RestRoute:
    """Middleware: `/` and `/index.php` with a FluentCRM `rest_route` go to the REST
    route it names; everything else passes through untouched (the dashboard is at `/`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/", "/index.php"):
            target = rewritten(scope)
            if target is not None:
                scope = target
            elif b"rest_route=" in scope.get("query_string", b""):
                # another plugin's REST route: WordPress's own answer for an unknown route
                await NO_ROUTE(scope, receive, send)
                return
        await self.app(scope, receive, send)


NO_ROUTE = JSONResponse(
    {
        "code": "rest_no_route",
        "message": "No route was found matching the URL and request method.",
        "data": {"status": 404},
    },
    status_code=404,
)
