"""WordPress without pretty permalinks serves its REST API as `/?rest_route=/...`
(capture 31): the same FluentCRM routes, reached through the site's front page."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode

from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

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


class RestRouteFallback:
    """Routes `/` and `/index.php` with a FluentCRM `rest_route` to the REST route it
    names; anything else there is not found, as without this fallback."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = rewritten(scope)
        if target is None:
            raise HTTPException(404)
        await scope["router"](target, receive, send)


def routes() -> list[Route]:
    """The front-page routes; each a plain Route, so that they stay outside the
    FluentCRM router's `/wp-json/fluent-crm/v2` prefix when it is included."""
    fallback = RestRouteFallback()
    return [
        Route(path, fallback, name=f"fluentcrm_rest_route{index}", include_in_schema=False)
        for index, path in enumerate(("/", "/index.php"))
    ]
