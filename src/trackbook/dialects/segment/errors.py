"""Segment's error shape: {"code", "message"}, the two fields its libraries read
(analytics-python raises APIError(status, code, message) from them).

Segment answers 400 to every request it refuses for its content (malformed JSON,
beyond the size limits), so 413 and 422 are answered as 400 here too; unlike Segment,
whose edge accepts any write key and drops the events later, a bad key is a 401.
"""

from __future__ import annotations

from starlette.responses import Response

from trackbook.accounts.errors import Forbidden, Unauthenticated
from trackbook.dialects.responses import JSON, ErrorReply
from trackbook.errors import DomainError, Invalid, NotFound

PREFIX = "/segment"


class SegmentRefused(DomainError):
    """A request Segment's API refuses as a whole, with its code and status."""

    code = "invalid_request"

    def __init__(self, message: str, code: str = "invalid_request", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class SegmentErrors:
    def reply_for(self, error: DomainError) -> ErrorReply:
        match error:
            case SegmentRefused():
                return ErrorReply(error.status, error.code, error.message)
            case Unauthenticated():
                return ErrorReply(
                    401,
                    "unauthorized",
                    f"{error.message}; send the write key as the Basic user name or as writeKey",
                    headers={"WWW-Authenticate": 'Basic realm="Trackbook"'},
                )
            case Forbidden():
                return ErrorReply(403, error.code, error.message)
            case Invalid():
                return ErrorReply(400, "invalid_request", error.message, error.field)
            case NotFound():
                return ErrorReply(404, error.code, error.message)
        return ErrorReply(400, "invalid_request", error.message)

    def render(self, reply: ErrorReply) -> Response:
        status = 400 if reply.status in (413, 422) else reply.status
        return JSON(
            {"code": reply.code, "message": reply.message},
            status_code=status,
            headers=reply.headers,
        )
