"""Request bodies as Segment's API takes them: JSON sent as application/json or as
text/plain (what navigator.sendBeacon sends, to spare a CORS preflight), optionally
gzip-compressed, within Segment's size limits once inflated."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request

from trackbook.dialects.segment.errors import SegmentRefused

EVENT_MAX_BYTES = 32 * 1024
"""Segment's limit for one message, alone or inside a batch."""
BATCH_MAX_BYTES = 500 * 1024
"""Segment's limit for a batch request."""
_JSON_TYPES = ("", "application/json", "text/plain")


def too_large(what: str, limit: int) -> SegmentRefused:
    return SegmentRefused(
        f"{what} is larger than Segment's limit of {limit // 1024} KB", "payload_too_large"
    )


def _inflate(data: bytes, limit: int) -> bytes:
    """gzip inflated to at most `limit` bytes: a small body that inflates beyond the
    limit (a gzip bomb) is refused without inflating the rest of it."""
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        inflated = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise SegmentRefused("the body is not valid gzip") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise too_large("the request body, inflated,", limit)
    if not inflater.eof:
        raise SegmentRefused("the gzip body is truncated")
    return inflated


async def json_body(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, inflated when gzip-encoded, at most `limit` bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES and not content_type.endswith("+json"):
        raise SegmentRefused(
            f"Content-Type {content_type!r} is not accepted: send application/json or text/plain"
        )
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        raw = _inflate(raw, limit)
    elif encoding != "identity":
        raise SegmentRefused(f"Content-Encoding {encoding!r} is not accepted: send gzip or none")
    if len(raw) > limit:
        raise too_large("the request body", limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SegmentRefused("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise SegmentRefused("the body must be a JSON object")
    return body
