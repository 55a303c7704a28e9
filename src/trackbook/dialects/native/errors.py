"""The native API's one error shape: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

from starlette.responses import Response

from trackbook.accounts.errors import Unauthenticated
from trackbook.dialects.responses import ErrorReply, native_error
from trackbook.errors import Conflict, DomainError, Invalid, NotFound
from trackbook.events.errors import TrackingDisabled

# Core field names, as the native API's bodies call them.
_WIRE_FIELDS = {"name": "event", "occurred_at": "timestamp"}


def wire_field(field: str, path: str = "") -> str:
    head, _, rest = field.partition(".")
    return path + _WIRE_FIELDS.get(head, head) + (f".{rest}" if rest else "")


def reply_for(error: DomainError, path: str = "") -> ErrorReply:
    match error:
        case Invalid():
            keep = bool(path) and error.field.startswith(path)
            field = error.field if keep else wire_field(error.field, path)
            return ErrorReply(422, error.code, f"{field} {error.reason}", field)
        case Unauthenticated():
            return ErrorReply(
                401, error.code, error.message, headers={"WWW-Authenticate": "Bearer"}
            )
        case NotFound():
            return ErrorReply(404, error.code, error.message)
        case Conflict():
            return ErrorReply(409, error.code, error.message)
        case TrackingDisabled():
            return ErrorReply(409, error.code, error.message)
    return ErrorReply(400, error.code, error.message)


class NativeErrors:
    def reply_for(self, error: DomainError) -> ErrorReply:
        return reply_for(error)

    def render(self, reply: ErrorReply) -> Response:
        return native_error(reply)
