"""Errors on dashboard pages: an HTML page, not a JSON body."""

from __future__ import annotations

from starlette.responses import HTMLResponse, Response

from trackbook.dialects.responses import ErrorReply
from trackbook.errors import Conflict, DomainError, Invalid, NotFound
from trackbook.web.routes import templates

PREFIXES = (
    "/contacts", "/events", "/segments", "/automations", "/settings", "/dropped", "/signin",
    "/signout",
)  # fmt: skip


class WebErrors:
    def reply_for(self, error: DomainError) -> ErrorReply:
        match error:
            case NotFound():
                status = 404
            case Invalid():
                status = 422
            case Conflict():
                status = 409
            case _:
                status = 400
        return ErrorReply(status, error.code, error.message)

    def render(self, reply: ErrorReply) -> Response:
        page = templates.env.get_template("error.html").render(reply=reply)
        return HTMLResponse(page, status_code=reply.status, headers=reply.headers)
