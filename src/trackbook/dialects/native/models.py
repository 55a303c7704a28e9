"""Request bodies of the native API, and how they become core commands."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from trackbook.contacts.identity import ContactRef, UnknownContact
from trackbook.events.model import TrackCommand
from trackbook.events.validation import parse_timestamp


class Body(BaseModel):
    # A misspelt field is refused rather than silently dropped with its data.
    model_config = ConfigDict(extra="forbid")


class ContactIn(Body):
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
    contact: ContactIn
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

    def command(self, path: str = "") -> TrackCommand:
        return TrackCommand(
            name=self.event,
            contact=self.contact.ref(f"{path}contact"),
            source="native",
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


class IdentifyIn(Body):
    anonymous_id: str = Field(min_length=1, max_length=255)
    contact: ContactIn
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
