"""The native API's one error shape: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

from starlette.responses import Response

from trackbook.accounts.errors import Forbidden, Unauthenticated
from trackbook.dialects.responses import ErrorReply, native_error
from trackbook.errors import Conflict, DomainError, Invalid, NotFound
from trackbook.events.errors import TrackingDisabled


class BodyNotJson(DomainError):
    """A body sent without a JSON Content-Type, as `curl -d` sends one (a form)."""

    code = "unsupported_media_type"


# Core field names, as the native API's bodies call them.
_WIRE_FIELDS = {"name": "event", "occurred_at": "timestamp"}


def wire_field(field: str, path: str = "") -> str:
    head, _, rest = field.partition(".")
    return path + _WIRE_FIELDS.get(head, head) + (f".{rest}" if rest else "")


def as_track_error(error: Invalid, path: str = "") -> Invalid:
    """An Invalid from track() named as the track body names its fields."""
    if path and error.field.startswith(path):
        return error
    # of the same class: its code (catalog_full, say) stays
    return type(error)(wire_field(error.field, path), error.reason)


def reply_for(error: DomainError, path: str = "") -> ErrorReply:
    match error:
        case Invalid():
            if path:
                error = as_track_error(error, path)
            return ErrorReply(422, error.code, f"{error.field} {error.reason}", error.field)
        case Unauthenticated():
            return ErrorReply(
                401, error.code, error.message, headers={"WWW-Authenticate": "Bearer"}
            )
        case Forbidden():
            return ErrorReply(403, error.code, error.message)
        case NotFound():
            return ErrorReply(404, error.code, error.message)
        case Conflict():
            return ErrorReply(409, error.code, error.message)
        case TrackingDisabled():
            return ErrorReply(409, error.code, error.message)
        case BodyNotJson():
            return ErrorReply(415, error.code, error.message)
    return ErrorReply(400, error.code, error.message)


class NativeErrors:
    def reply_for(self, error: DomainError) -> ErrorReply:
        return reply_for(error)

    def render(self, reply: ErrorReply) -> Response:
        return native_error(reply)
