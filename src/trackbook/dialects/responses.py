"""Responses and error rendering shared by every dialect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from fastapi.responses import JSONResponse
from starlette.responses import Response

from trackbook.errors import DomainError

RETRY_AFTER_SECONDS = 5


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error before it takes a dialect's shape."""

    status: int
    code: str
    message: str
    field: str | None = None
    headers: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    """A body the dialect has already shaped; its renderer sends it as it is."""


class WireErrors(Protocol):
    """How one dialect turns domain errors into replies and replies into its shape."""

    def reply_for(self, error: DomainError) -> ErrorReply: ...

    def render(self, reply: ErrorReply) -> Response: ...


_dialects: list[tuple[str, WireErrors]] = []


def register_dialect(prefix: str, errors: WireErrors) -> None:
    """Errors of requests under the path `prefix` take this dialect's shape."""
    if any(known == prefix for known, _ in _dialects):
        return
    _dialects.append((prefix, errors))
    _dialects.sort(key=lambda entry: len(entry[0]), reverse=True)


def dialect_for(path: str) -> WireErrors | None:
    for prefix, errors in _dialects:
        if path.startswith(prefix):
            return errors
    return None


def render_error(path: str, reply: ErrorReply) -> Response:
    dialect = dialect_for(path)
    return native_error(reply) if dialect is None else dialect.render(reply)


def native_error(reply: ErrorReply) -> Response:
    body: dict[str, Any] = {"code": reply.code, "message": reply.message}
    if reply.field is not None:
        body["field"] = reply.field
    return JSON({"error": body}, status_code=reply.status, headers=reply.headers)
