"""Request parameters as PHP applications read them: query, form and JSON merged."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.requests import Request

from trackbook.errors import DomainError
from trackbook.events.validation import check_depth

_BRACKETS = re.compile(r"^([^\[\]]+)\[([^\[\]]*)\]$")


class MalformedJson(DomainError):
    code = "malformed_json"

    def __init__(self) -> None:
        super().__init__("the body is not valid JSON")


async def merged_params(request: Request) -> dict[str, Any]:
    """Query string, then a form body, then a JSON body, each overriding the one before,
    as WordPress and Octeth merge them."""
    params = php_params(request.query_params.multi_items())
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        params.update(php_params((k, v) for k, v in form.multi_items() if isinstance(v, str)))
    elif content_type == "application/json" or content_type.endswith("+json"):
        raw = await request.body()
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise MalformedJson from None
            # before anything walks it; Invalid is each dialect's 4xx
            check_depth(body, "body")
            if isinstance(body, dict):
                params.update(body)
    return params


def php_params(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`tags[]=a&tags[]=b` is the list ['a', 'b'] and `p[k]=v` the object {'k': 'v'},
    as PHP reads a form."""
    params: dict[str, Any] = {}
    for key, value in items:
        bracketed = _BRACKETS.match(key)
        if bracketed is None:
            params[key] = value
            continue
        name, inner = bracketed.groups()
        if inner == "":
            existing = params.get(name)
            params[name] = [*existing, value] if isinstance(existing, list) else [value]
        else:
            existing = params.get(name)
            params[name] = (
                {**existing, inner: value} if isinstance(existing, dict) else {inner: value}
            )
    return params


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """The user name and password of an HTTP Basic `Authorization` header, or None."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else None
