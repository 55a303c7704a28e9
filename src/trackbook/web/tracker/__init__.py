"""GET /t.js: the browser tracker that sites embed, minified once and served to anyone."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import rjsmin
from fastapi import Request
from starlette.responses import Response

from trackbook.routing import PrefixRouter

router = PrefixRouter(include_in_schema=False)

SOURCE = Path(__file__).with_name("t.js")
CACHE_CONTROL = "public, max-age=3600"
"""An hour: a changed tracker reaches every site within it; the ETag makes the
revalidation after it cheap."""


@dataclass(frozen=True)
class Script:
    text: bytes
    etag: str


@functools.cache
def script() -> Script:
    text = rjsmin.jsmin(SOURCE.read_text(encoding="utf-8")).encode()
    return Script(text, f'"{hashlib.sha256(text).hexdigest()[:32]}"')


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


@router.api_route("/t.js", methods=["GET", "HEAD"])
async def tracker(request: Request) -> Response:
    served = script()
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": served.etag,
        # embedded by other sites, including those that isolate themselves (COEP) or
        # load it with crossorigin for subresource integrity
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Access-Control-Allow-Origin": "*",
    }
    if _matches(request.headers.get("if-none-match", ""), served.etag):
        return Response(status_code=304, headers=headers)
    return Response(served.text, media_type="application/javascript", headers=headers)
