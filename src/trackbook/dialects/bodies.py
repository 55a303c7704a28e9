"""JSON bodies that FastAPI reads for a route's model, held to the core's nesting limit
before the model (or anything else) walks them."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from trackbook.events.validation import JSON_MAX_DEPTH, nesting_depth

TOO_DEEP = f"body must be nested at most {JSON_MAX_DEPTH} deep"


def loads_nested(raw: bytes) -> Any:
    """JSON as the standard library reads it, however deep it nests (orjson reads up
    to 1,024 levels where the standard library fails past Python's recursion limit);
    json.JSONDecodeError when it is not JSON."""
    try:
        return json.loads(raw)
    except RecursionError:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise json.JSONDecodeError(TOO_DEEP, "", 0) from None


class _DepthCheckedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = loads_nested(await self.body())
            if nesting_depth(body, JSON_MAX_DEPTH) > JSON_MAX_DEPTH:
                # FastAPI answers a JSONDecodeError as a RequestValidationError
                raise json.JSONDecodeError(TOO_DEEP, "", 0)
            self._json = body
        return self._json


class DepthCheckedRoute(APIRoute):
    """A route whose JSON body is refused (422, or the dialect's RequestValidationError)
    when it nests deeper than JSON_MAX_DEPTH, rather than failing deep inside."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_checked(request: Request) -> Response:
            return await handle(_DepthCheckedRequest(request.scope, request.receive))

        return handle_checked
