"""ActiveCampaign's error shapes: v3 JSON:API errors, and trackcmp's {success, message}."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

from trackbook.accounts.errors import Forbidden, Unauthenticated
from trackbook.contacts.errors import ContactConflict, ContactNotFound
from trackbook.dialects.bodies import DepthCheckedRoute
from trackbook.dialects.responses import JSON, ErrorReply
from trackbook.errors import DomainError, Invalid, NotFound

DUPLICATE_EMAIL = "Email address already exists in the system."


class FieldError(DomainError):
    """A v3 validation error on one attribute, as ActiveCampaign words them."""

    code = "field"

    def __init__(self, title: str, code: str, attribute: str) -> None:
        super().__init__(title)
        self.title = title
        self.error_code = code
        self.attribute = attribute


class RequestInvalid(DomainError):
    """A v3 request FastAPI could not parse: each problem as pydantic reports it."""

    code = "invalid"

    def __init__(self, problems: Sequence[Any]) -> None:
        super().__init__("the request is invalid")
        self.problems = problems


class V3Route(DepthCheckedRoute):
    """Turns request validation errors into RequestInvalid, so that V3Errors answers
    them in ActiveCampaign's shape rather than the native one."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_v3(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as error:
                raise RequestInvalid(error.errors()) from None

        return handle_v3


class TrackcmpRefused(DomainError):
    """trackcmp and v1 refusals: {"success": 0, "message": ...} with this status."""

    code = "refused"

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _errors(title: str, code: str, pointer: str) -> dict[str, Any]:
    return {
        "errors": [{"title": title, "detail": "", "code": code, "source": {"pointer": pointer}}]
    }


def _problem(problem: Any) -> dict[str, Any]:
    """One pydantic problem as a JSON:API error. The request's envelope key
    (`eventTrackingEvent`, `contact`) is ActiveCampaign's `/data/attributes`."""
    where, *path = [str(part) for part in problem.get("loc", ())] or ["body"]
    detail = str(problem.get("msg", "is invalid"))
    if where != "body":
        source = {"parameter": path[0] if path else where}
    elif problem.get("type") == "json_invalid":
        return {
            "title": "The request body is not valid JSON.",
            "detail": detail,
            "code": "body_invalid",
            "source": {"pointer": "/data"},
        }
    else:
        attributes = path[1:]
        source = {"pointer": "/".join(["/data/attributes", *attributes]) if attributes else "/data"}
    name = (path or [where])[-1]
    missing = problem.get("type") == "missing"
    return {
        "title": f"The {name} field is required." if missing else f"The {name} field is invalid.",
        "detail": detail,
        "code": "field_missing" if missing else "field_invalid",
        "source": source,
    }


class V3Errors:
    def reply_for(self, error: DomainError) -> ErrorReply:
        match error:
            case Unauthenticated() | Forbidden():
                return ErrorReply(403, error.code, error.message, body={"message": "Forbidden"})
            case FieldError():
                body = _errors(error.title, error.error_code, f"/data/attributes/{error.attribute}")
                return ErrorReply(422, error.code, error.message, body=body)
            case ContactConflict():  # a contact created or changed onto a held email
                body = _errors(DUPLICATE_EMAIL, "duplicate", "/data/attributes/email")
                return ErrorReply(422, error.code, error.message, body=body)
            case RequestInvalid():
                body = {"errors": [_problem(problem) for problem in error.problems]}
                return ErrorReply(422, error.code, error.message, body=body)
            case Invalid():
                body = _errors(error.message, "field_invalid", f"/data/attributes/{error.field}")
                return ErrorReply(422, error.code, error.message, body=body)
            case ContactNotFound():
                return ErrorReply(404, error.code, error.message, body={"message": error.message})
            case NotFound():
                body = {"errors": [{"status": 404, "title": "Not Found", "detail": error.message}]}
                return ErrorReply(404, error.code, error.message, body=body)
        body = {"errors": [{"status": 400, "title": "Bad Request", "detail": error.message}]}
        return ErrorReply(400, error.code, error.message, body=body)

    def render(self, reply: ErrorReply) -> Response:
        body = reply.body
        if body is None:
            titles = {
                404: "Not Found",
                413: "Payload Too Large",
                429: "Too Many Requests",
                503: "Service Unavailable",
            }
            title = titles.get(reply.status, "Unprocessable Entity")
            body = {"errors": [{"status": reply.status, "title": title, "detail": reply.message}]}
        return JSON(body, status_code=reply.status, headers=reply.headers)


class TrackcmpErrors:
    def reply_for(self, error: DomainError) -> ErrorReply:
        if isinstance(error, TrackcmpRefused):
            return ErrorReply(error.status, error.code, error.message)
        if isinstance(error, Unauthenticated | Forbidden):
            return ErrorReply(403, error.code, "You are not authorized to access this file")
        return ErrorReply(400, error.code, error.message)

    def render(self, reply: ErrorReply) -> Response:
        body = {"success": 0, "message": reply.message}
        return JSON(body, status_code=reply.status, headers=reply.headers)
