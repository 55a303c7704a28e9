"""WordPress's request parameters: query, form body and JSON body merged into one."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson
from starlette.requests import Request

from trackbook.dialects.fluentcrm.errors import InvalidJson

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


async def wp_params(request: Request) -> dict[str, Any]:
    """As WP_REST_Request::get_param sees them: JSON over form over query string."""
    params: dict[str, Any] = _php_arrays(request.query_params.multi_items())
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        params.update(_php_arrays((k, v) for k, v in form.multi_items() if isinstance(v, str)))
    elif content_type == "application/json" or content_type.endswith("+json"):
        raw = await request.body()
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise InvalidJson("the body is not valid JSON") from None
            if isinstance(body, dict):
                params.update(body)
    return params


def _php_arrays(items: Any) -> dict[str, Any]:
    """`tags[]=a&tags[]=b` is the list ['a', 'b'], as PHP reads it."""
    params: dict[str, Any] = {}
    for key, value in items:
        if key.endswith("[]"):
            params.setdefault(key[:-2], []).append(value)
        else:
            params[key] = value
    return params


def sanitize_text(value: Any) -> str:
    """WordPress's sanitize_text_field: no tags, no line breaks or runs of spaces, trimmed."""
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return _SPACE.sub(" ", _TAG.sub("", str(value))).strip()


def php_truthy(value: Any) -> bool:
    """PHP's truthiness: false, 0, "", "0", null and [] are false; the string "false" is true."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def php_int(value: Any) -> int | None:
    """An id as PHP's intval would accept it, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def basic_password(authorization: str | None) -> str | None:
    """The password of an HTTP Basic header; WordPress application passwords may be
    pasted with the spaces they are displayed with."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, separator, password = decoded.partition(":")
    return password.replace(" ", "") if separator else None
