"""FluentCRM's error shapes, as the captures in peers/fluentcrm-captures.md record them."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from trackbook.accounts.errors import Forbidden, Unauthenticated
from trackbook.contacts.errors import ContactConflict, ContactNotFound
from trackbook.dialects.params import MalformedJson
from trackbook.dialects.responses import JSON, ErrorReply
from trackbook.errors import DomainError, Invalid, NotFound
from trackbook.events.errors import TrackingDisabled

# Laravel's "model not found" text, which FluentCRM returns for an unknown id (capture 23).
MODEL_NOT_FOUND = "No query results for model [FluentCrm\\App\\Models\\Subscriber]."


class FieldErrors(DomainError):
    """FluentCRM's validator: {field: {rule: message}} for every failing field."""

    code = "validation"

    def __init__(self, errors: dict[str, dict[str, str]]) -> None:
        super().__init__("; ".join(m for rules in errors.values() for m in rules.values()))
        self.errors = errors


def _wordpress(status: int, code: str, message: str, **data: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "data": {"status": status, **data}}


class FluentErrors:
    def reply_for(self, error: DomainError) -> ErrorReply:
        match error:
            case Unauthenticated():
                body = _wordpress(401, "rest_forbidden", "Sorry, you are not allowed to do that.")
                return ErrorReply(401, error.code, error.message, body=body)
            case Forbidden():
                body = _wordpress(403, "rest_forbidden", "Sorry, you are not allowed to do that.")
                return ErrorReply(403, error.code, error.message, body=body)
            case TrackingDisabled():
                body = {"message": "Event Tracker is not enabled", "error_code": "not_enabled"}
                return ErrorReply(422, error.code, error.message, body=body)
            case ContactNotFound():
                body = {"message": error.message, "error_code": "subscriber_not_found"}
                return ErrorReply(422, error.code, error.message, body=body)
            case NotFound():
                return ErrorReply(404, error.code, error.message, body={"message": MODEL_NOT_FOUND})
            case FieldErrors():
                return ErrorReply(422, error.code, error.message, body=error.errors)
            case MalformedJson():
                body = _wordpress(
                    400,
                    "rest_invalid_json",
                    "Invalid JSON body passed.",
                    json_error_code=4,
                    json_error_message="Syntax error",
                )
                return ErrorReply(400, error.code, error.message, body=body)
            case ContactConflict():
                body = {
                    "email": {"unique": "Provided email already assigned to another subscriber."}
                }
                return ErrorReply(422, error.code, error.message, body=body)
            case Invalid():
                body = {error.field: {"invalid": f"The {error.field} {error.reason}."}}
                return ErrorReply(422, error.code, error.message, body=body)
        return ErrorReply(400, error.code, error.message)

    def render(self, reply: ErrorReply) -> Response:
        body = reply.body
        if body is None:
            # What WordPress itself answers for errors outside FluentCRM's code
            # (no route, body too large, storage down).
            code = {
                404: "rest_no_route",
                413: "rest_payload_too_large",
                429: "rest_too_many_requests",
            }.get(reply.status, f"trackbook_{reply.code}")
            body = _wordpress(reply.status, code, reply.message)
        return JSON(body, status_code=reply.status, headers=reply.headers)
