"""Octeth's error shape: {"Errors": [{"Code", "Message"}]}, every detected error listed."""

from __future__ import annotations

from starlette.responses import Response

from trackbook.accounts.errors import Forbidden, Unauthenticated
from trackbook.contacts.errors import ContactConflict
from trackbook.dialects.params import MalformedJson
from trackbook.dialects.responses import JSON, ErrorReply
from trackbook.errors import DomainError, Invalid
from trackbook.events.errors import TrackingDisabled

UNAUTHENTICATED = 11
UUID_CONFLICT = 12
STORAGE_UNAVAILABLE = 13
TRACKING_DISABLED = 14
UNKNOWN_COMMAND = 15
TOO_LARGE = 16
MALFORMED = 17
BEYOND_LIMITS = 18
RATE_LIMITED = 19
FORBIDDEN = 20


class OctethErrors(DomainError):
    """One or more numbered Octeth errors, answered together."""

    code = "octeth"

    def __init__(self, errors: list[tuple[int, str]], status: int = 422) -> None:
        super().__init__("; ".join(message for _, message in errors))
        self.errors = errors
        self.status = status


def _body(errors: list[tuple[int, str]]) -> dict[str, list[dict[str, object]]]:
    return {"Errors": [{"Code": code, "Message": message} for code, message in errors]}


class OctethWire:
    def reply_for(self, error: DomainError) -> ErrorReply:
        match error:
            case OctethErrors():
                return ErrorReply(error.status, error.code, error.message, body=_body(error.errors))
            case Unauthenticated():
                errors = [(UNAUTHENTICATED, "Invalid or missing API key")]
                return ErrorReply(401, error.code, error.message, body=_body(errors))
            case Forbidden():
                errors = [(FORBIDDEN, error.message)]
                return ErrorReply(403, error.code, error.message, body=_body(errors))
            case ContactConflict():
                errors = [(UUID_CONFLICT, error.message)]
                return ErrorReply(409, error.code, error.message, body=_body(errors))
            case MalformedJson():
                errors = [(MALFORMED, "The request body is not valid JSON")]
                return ErrorReply(400, error.code, error.message, body=_body(errors))
            case TrackingDisabled():
                errors = [(TRACKING_DISABLED, "Event tracking is disabled for this account")]
                return ErrorReply(422, error.code, error.message, body=_body(errors))
            case Invalid():
                errors = [(BEYOND_LIMITS, f"{error.field} {error.reason}")]
                return ErrorReply(422, error.code, error.message, body=_body(errors))
        return ErrorReply(
            422, error.code, error.message, body=_body([(BEYOND_LIMITS, error.message)])
        )

    def render(self, reply: ErrorReply) -> Response:
        body = reply.body
        if body is None:
            code = {
                413: TOO_LARGE,
                429: RATE_LIMITED,
                503: STORAGE_UNAVAILABLE,
                400: MALFORMED,
            }.get(reply.status, UNKNOWN_COMMAND)
            body = _body([(code, reply.message)])
        return JSON(body, status_code=reply.status, headers=reply.headers)
