"""Request bodies of the native API, and how they become core commands."""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError
from starlette.requests import Request

from trackbook.contacts.identity import ContactRef, UnknownContact
from trackbook.dialects.bodies import loads_nested
from trackbook.dialects.native.errors import BodyNotJson
from trackbook.events.model import TrackCommand
from trackbook.events.validation import parse_timestamp


async def json_content(request: Request) -> None:
    """A body must say it is JSON. `curl -d` sends a form's Content-Type, which would
    otherwise be refused as "not a valid dictionary", leaving the sender to guess why.
    Async, though it awaits nothing: FastAPI runs a plain function dependency in a worker
    thread, a hand-off on every /v1 request."""
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and content_type != "application/json" and not content_type.endswith("+json"):
        sent = f"Content-Type {content_type}" if content_type else "no Content-Type"
        raise BodyNotJson(
            f"the body must be JSON, sent with the header Content-Type: application/json "
            f"(this one came with {sent}; curl -d sends a form: use --json, or add "
            "-H 'Content-Type: application/json')"
        )


class Body(BaseModel):
    # A misspelt field is refused rather than silently dropped with its data.
    model_config = ConfigDict(extra="forbid")


class ContactRefIn(Body):
    # not ContactIn: the ActiveCampaign dialect has one, and two models of one name are
    # shown in the API reference under their module paths
    id: int | None = None
    email: str | None = None
    external_id: str | None = None
    anonymous_id: str | None = None

    def ref(self, field: str = "contact") -> ContactRef:
        return ContactRef.build(
            id=self.id,
            email=self.email,
            external_id=self.external_id,
            anonymous_id=self.anonymous_id,
            field=field,
        )


class TrackIn(Body):
    event: str = Field(description="The event name, 1 to 255 characters.")
    contact: ContactRefIn
    title: str | None = None
    value: str | StrictInt | StrictFloat | None = None
    properties: dict[str, Any] | None = None
    timestamp: str | StrictInt | StrictFloat | None = Field(
        default=None,
        description="When it happened: ISO 8601 with an offset, or seconds since the epoch. "
        "Defaults to when it is received; at most 10 minutes ahead.",
    )
    message_id: str | None = Field(
        default=None,
        description="Idempotency key: a replay stores nothing and returns the original.",
    )
    source: str | None = Field(
        default=None, max_length=64, description="Provider of the event, e.g. woocommerce."
    )

    def command(self, path: str = "", *, source: str = "native") -> TrackCommand:
        return TrackCommand(
            name=self.event,
            contact=self.contact.ref(f"{path}contact"),
            source=source,
            unknown_contact=UnknownContact.CREATE_ALWAYS,
            title=self.title,
            value=None if self.value is None else str(self.value),
            properties=self.properties,
            occurred_at=None
            if self.timestamp is None
            else parse_timestamp(self.timestamp, f"{path}timestamp"),
            message_id=self.message_id,
            provider=self.source,
        )


class BatchIn(Body):
    events: list[dict[str, Any]]


class _WellFormedBatch(Body):
    events: list[TrackIn]


def _batch_schema() -> dict[str, Any]:
    """The body as a sender writes it: each event as /v1/track's body, TrackIn, which
    the API reference holds among its schemas."""
    schema = _WellFormedBatch.model_json_schema(ref_template="#/components/schemas/{model}")
    del schema["$defs"]
    return {**schema, "title": "BatchIn"}


BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _batch_schema()}},
    }
}
"""The OpenAPI of /v1/batch's body, which the route reads itself (batch_events)."""


def batch_events(body: bytes) -> list[TrackIn] | list[dict[str, Any]]:
    """The events of a /v1/batch body. Nearly always every event is well formed, and
    the body is parsed and validated in one pass from its bytes; otherwise it is parsed
    as FastAPI would have, each event to be validated on its own so that one bad event
    refuses only itself. RequestValidationError when the body itself is wrong."""
    try:
        return _WellFormedBatch.model_validate_json(body).events
    except ValidationError:
        pass
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        # each event is held to the limits (its nesting too) on its own
        data = loads_nested(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {
                        "error": error.msg
                        if isinstance(error, json.JSONDecodeError)
                        else str(error)
                    },
                }
            ]
        ) from None
    try:
        return BatchIn.model_validate(data).events
    except ValidationError as error:
        raise RequestValidationError(
            [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)]
        ) from None


class IdentifyIn(Body):
    anonymous_id: str = Field(min_length=1, max_length=255)
    contact: ContactRefIn
    traits: dict[str, Any] | None = None


class ContactFields(Body):
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    status: str | None = None


class ContactUpsertIn(ContactFields):
    email: str | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=255)


class ContactPatchIn(ContactUpsertIn):
    pass


class ListIn(Body):
    name: str


class AccountPatchIn(Body):
    name: str | None = None
    timezone: str | None = None
    tracking_enabled: bool | None = None


class SegmentIn(Body):
    name: str
    definition: dict[str, Any] = Field(
        description="Nested all/any groups of conditions; see the segments section of the README."
    )


class SegmentPatchIn(Body):
    name: str | None = None
    definition: dict[str, Any] | None = None


class PreviewIn(Body):
    definition: dict[str, Any]
    limit: int = Field(default=20, ge=1, le=100)
