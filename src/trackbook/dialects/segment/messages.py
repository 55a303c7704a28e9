"""One Segment message in the core's terms: the event it records and the identities it
says belong together.

Segment's fields map onto the core as follows: `userId` is the contact's external id,
`anonymousId` an anonymous alias, `traits.email` (identify) or `context.traits.email`
(any call) the email, `event` the event name, `messageId` the idempotency key. `page`
and `screen` record "Page Viewed" and "Screen Viewed". The message's `context` is kept
with the event, in its properties under the reserved key `$context`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel, to_snake

from trackbook.contacts.identity import (
    ContactRef,
    IdentityLink,
    UnknownContact,
    normalise_email,
)
from trackbook.errors import DomainError, Invalid
from trackbook.events import dropped
from trackbook.events.model import TrackCommand
from trackbook.events.validation import (
    TITLE_MAX,
    check_command,
    in_utc,
    parse_timestamp,
    storable,
)

SOURCE = "segment"
CONTEXT_KEY = "$context"
PAGE_VIEWED = "Page Viewed"
SCREEN_VIEWED = "Screen Viewed"
TYPES = ("track", "identify", "page", "screen", "alias", "group")
ID_MAX = 255
_PAGE_FIELDS = ("url", "path", "referrer", "title", "search")
# context.campaign as analytics.js fills it from the page's utm_ parameters
_CAMPAIGN = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}
# identify traits stored on the contact, by Segment's spec names and their snake_case
_TRAITS = {
    "firstName": ("first_name", 200),
    "first_name": ("first_name", 200),
    "lastName": ("last_name", 200),
    "last_name": ("last_name", 200),
    "phone": ("phone", 64),
}
# core field names as a Segment message names them
_WIRE_FIELDS = {
    "name": "event",
    "occurred_at": "timestamp",
    "message_id": "messageId",
    "title": "name",
}

Moment = str | float | None
AnyError = TypeVar("AnyError", bound=DomainError)


class MessageIn(BaseModel):
    """A message of Segment's spec; fields Trackbook has no use for are accepted."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    type: str | None = None
    user_id: str | int | None = None
    anonymous_id: str | int | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    timestamp: Moment = None
    original_timestamp: Moment = None
    sent_at: Moment = None
    message_id: str | None = None
    previous_id: str | int | None = None
    group_id: str | int | None = None
    write_key: str | None = None


class BatchIn(BaseModel):
    """`/v1/batch`: messages of any type; `sentAt` applies to those without their own,
    `context` fills in what theirs leave out."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    batch: list[dict[str, Any]]
    sent_at: Moment = None
    context: dict[str, Any] | None = None
    write_key: str | None = None


class Success(BaseModel):
    success: bool = True


class Error(BaseModel):
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What one message asks of Trackbook: identities to link first, then an event to
    record; or, for what Trackbook does not store (group), the reason it is dropped."""

    link: IdentityLink | None = None
    command: TrackCommand | None = None
    drop_reason: str | None = None


def wire_field(field: str) -> str:
    head, _, rest = field.partition(".")
    return _WIRE_FIELDS.get(head, head) + (f".{rest}" if rest else "")


def as_message_error(error: AnyError) -> AnyError:
    """An error from the core with its field (an Invalid's) named as a Segment message
    names it; of the same class, so that its code (catalog_full, say) stays."""
    if isinstance(error, Invalid):
        return type(error)(wire_field(error.field), error.reason)
    return error


def moment(value: Moment, field: str) -> datetime | None:
    """An ISO 8601 time (UTC when it has no offset) or seconds since the epoch."""
    if value is None:
        return None
    if not isinstance(value, str):
        return parse_timestamp(value, field)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(field, "must be an ISO 8601 time") from None
    return in_utc(parsed, field) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def occurred_at(
    message: MessageIn, batch_sent_at: datetime | None, received_at: datetime
) -> datetime | None:
    """As Segment documents: `timestamp` when given; else `originalTimestamp` corrected
    for the sender's clock, receivedAt - (sentAt - originalTimestamp); else None, the
    time it was received."""
    if message.timestamp is not None:
        return moment(message.timestamp, "timestamp")
    original = moment(message.original_timestamp, "originalTimestamp")
    if original is None:
        return None
    sent_at = moment(message.sent_at, "sentAt") or batch_sent_at
    if sent_at is None:
        return original
    try:
        return received_at - (sent_at - original)
    except OverflowError:
        # a sender's clock years off (sentAt 9999, originalTimestamp 0001) moves the time
        # out of what a datetime holds; the message is refused, not the batch
        raise Invalid(
            "originalTimestamp", "is out of range once corrected by sentAt for clock skew"
        ) from None


def _identifier(value: str | int | None, field: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if len(text) > ID_MAX:
        raise Invalid(field, f"must be at most {ID_MAX} characters")
    if not storable(text):
        raise Invalid(field, "must not contain NUL characters or invalid Unicode")
    return text or None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _email(message: MessageIn, kind: str) -> str | None:
    for field, traits in (
        ("traits.email", message.traits if kind == "identify" else None),
        ("context.traits.email", _object(message.context).get("traits")),
    ):
        email = _object(traits).get("email")
        if isinstance(email, str) and email.strip():
            return normalise_email(email, field)
    return None


def _traits(traits: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    stored: dict[str, str] = {}
    for name, value in (traits or {}).items():
        column = _TRAITS.get(name)
        if column is not None and isinstance(value, str) and value.strip():
            stored[column[0]] = value.strip()[: column[1]]
    return tuple(stored.items())


def _page_properties(message: MessageIn, context: dict[str, Any]) -> dict[str, Any]:
    properties = dict(message.properties or {})
    page = _object(context.get("page"))
    for field in _PAGE_FIELDS:
        if properties.get(field) in (None, "") and page.get(field) not in (None, ""):
            properties[field] = page[field]
    campaign = _object(context.get("campaign"))
    for field, utm in _CAMPAIGN.items():
        if campaign.get(field) not in (None, ""):
            properties.setdefault(utm, campaign[field])
    for field, value in (("name", message.name), ("category", message.category)):
        if value:
            properties.setdefault(field, value)
    return properties


def _event(message: MessageIn, kind: str) -> tuple[str, str | None, dict[str, Any]]:
    """The event name, title and properties a track, page or screen records."""
    context = message.context or {}
    if kind == "track":
        if not message.event or not message.event.strip():
            raise Invalid("event", "is required for a track call")
        name, title, properties = message.event, None, dict(message.properties or {})
    elif kind == "page":
        properties = _page_properties(message, context)
        path = properties.get("path")
        title = message.name or (path if isinstance(path, str) else None)
        name = PAGE_VIEWED
    else:
        properties = dict(message.properties or {})
        if message.name:
            properties.setdefault("name", message.name)
        name, title = SCREEN_VIEWED, message.name
    if context:
        properties[CONTEXT_KEY] = context
    return name, None if title is None else title[:TITLE_MAX], properties


def naming(raw: Any, kind: str) -> ContactRef:
    """Whom a message names, read as plan() reads it but leniently, for a message that is
    dropped (perhaps because it is malformed): userId, anonymousId (an alias call's
    previousId) and the email of identify's traits or of context.traits."""
    message = _object(raw)

    def field(name: str) -> Any:
        # MessageIn takes each field by its Segment name or its snake_case one
        return message.get(name, message.get(to_snake(name)))

    email = None
    for traits in (
        field("traits") if kind == "identify" else None,
        _object(field("context")).get("traits"),
    ):
        email = _object(traits).get("email")
        if isinstance(email, str) and email.strip():
            break
    return dropped.naming(
        email=email,
        external_id=field("userId"),
        anonymous_id=field("previousId" if kind == "alias" else "anonymousId"),
    )


def _validated(raw: Any) -> MessageIn:
    if not isinstance(raw, dict):
        raise Invalid("message", "must be a JSON object")
    try:
        return MessageIn.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "message"
        raise Invalid(field, first["msg"].lower()) from None


def plan(
    raw: Any,
    kind: str,
    *,
    batch_sent_at: datetime | None,
    received_at: datetime,
) -> Plan:
    """The plan for one message of type `kind`; Invalid, with the message's own field
    names, when it cannot be followed."""
    if kind not in TYPES:
        raise Invalid("type", f"must be one of {', '.join(TYPES)}")
    message = _validated(raw)
    user_id = _identifier(message.user_id, "userId")
    if kind == "alias":
        previous_id = _identifier(message.previous_id, "previousId")
        if user_id is None or previous_id is None:
            raise Invalid("previousId", "and userId are required for an alias call")
        return Plan(link=IdentityLink(None, user_id, previous_id))
    anonymous_id = _identifier(message.anonymous_id, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise Invalid("userId", "or anonymousId is required")
    if kind == "group":
        return Plan(drop_reason=dropped.NOT_SUPPORTED)
    email = _email(message, kind)
    if kind == "identify":
        if email is None and user_id is None:
            # traits of an anonymous visitor: no contact to keep them on, so the call is
            # kept as a dropped event, as every call Trackbook does not store
            return Plan(drop_reason=dropped.NOT_SUPPORTED)
        return Plan(link=IdentityLink(email, user_id, anonymous_id, _traits(message.traits)))
    name, title, properties = _event(message, kind)
    identified = email is not None or user_id is not None
    command = TrackCommand(
        name=name,
        contact=ContactRef(email=email, external_id=user_id)
        if identified
        else ContactRef(anonymous_id=anonymous_id),
        source=SOURCE,
        unknown_contact=UnknownContact.CREATE_ALWAYS,
        title=title,
        properties=properties,
        occurred_at=occurred_at(message, batch_sent_at, received_at),
        message_id=message.message_id,
    )
    try:
        check_command(command, received_at=received_at)
    except Invalid as error:
        raise as_message_error(error) from None
    several = sum(value is not None for value in (email, user_id, anonymous_id)) > 1
    return Plan(
        link=IdentityLink(email, user_id, anonymous_id) if several else None, command=command
    )
