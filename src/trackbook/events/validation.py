"""The limits every event must respect, whichever dialect it came through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from trackbook.contacts.identity import VisitorNaming
from trackbook.errors import Invalid
from trackbook.events.model import TrackCommand

NAME_MAX = 255
TITLE_MAX = 255
VALUE_MAX = 65_535
MESSAGE_ID_MAX = 255
PROPERTIES_MAX_BYTES = 32 * 1024
PROPERTIES_MAX_DEPTH = 5
PROPERTIES_MAX_KEYS = 200
"""Top-level keys of one event's properties: each name enters the event_properties
catalog that the dashboard and segment editor list. Segment's `$context` counts as one."""
JSON_MAX_DEPTH = 32
"""How deeply one request body (one message of a batch) may nest objects and lists,
checked as the dialect reads it and before anything walks it. Below the depths at
which the tools fail (orjson writes 254 levels, pydantic reads 200, Python recurses
about 1,000 deep), so that a deeper body is the dialect's 4xx and never a 500: a
constant, since a larger value would bring those failures back."""
FUTURE_TOLERANCE = timedelta(minutes=10)


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply `value` nests objects and lists (a scalar is 0, `{}` is 1), counted
    without recursion; past `limit` it stops counting and answers `limit + 1`."""
    deepest = 0
    containers: list[tuple[Any, int]] = [(value, 1)]
    while containers:
        item, depth = containers.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return limit + 1
        deepest = max(deepest, depth)
        containers.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return deepest


def check_depth(value: Any, field: str, limit: int = JSON_MAX_DEPTH) -> None:
    """Invalid when `value` nests objects and lists more than `limit` deep."""
    if nesting_depth(value, limit) > limit:
        raise Invalid(field, f"must be nested at most {limit} deep")


def _bounded(value: str | None, field: str, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise Invalid(field, f"must be at most {limit} characters")


def storable(text: str) -> bool:
    """Text both databases can store: no NUL character (PostgreSQL refuses it) and no
    lone surrogate (not encodable as UTF-8)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable_json(value: Any) -> bool:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(storable(key) and _storable_json(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable_json(item) for item in value)
    return True


def _check_properties(properties: Any) -> None:
    # first: the checks after it recurse, and orjson refuses to write 254 levels
    check_depth(properties, "properties", PROPERTIES_MAX_DEPTH)
    if not _storable_json(properties):
        raise Invalid("properties", "must not contain NUL characters or invalid Unicode")
    if not isinstance(properties, dict):
        raise Invalid("properties", "must be an object")
    try:
        size = len(orjson.dumps(properties))
    except TypeError as error:
        raise Invalid("properties", f"cannot be stored as JSON: {error}") from None
    if len(properties) > PROPERTIES_MAX_KEYS:
        raise Invalid("properties", f"must have at most {PROPERTIES_MAX_KEYS} keys")
    if size > PROPERTIES_MAX_BYTES:
        raise Invalid("properties", f"must be at most {PROPERTIES_MAX_BYTES} bytes as JSON")


def _check_naming(naming: VisitorNaming) -> None:
    # Checked before the event joins a group: the writer looks every naming of the group
    # up in one statement, which text the database cannot hold would fail for all.
    texts = (naming.email, naming.external_id, naming.visitor_id, *(v for _, v in naming.fields))
    if any(text is not None and not storable(text) for text in texts):
        raise Invalid("as_named", "must not contain NUL characters or invalid Unicode")


def check_command(command: TrackCommand, *, received_at: datetime) -> datetime:
    """Raises Invalid for the first limit `command` breaks; returns its occurred_at."""
    if not 1 <= len(command.name) <= NAME_MAX or not command.name.strip():
        raise Invalid("name", f"must be 1 to {NAME_MAX} characters")
    for field, text in (
        ("name", command.name),
        ("title", command.title),
        ("value", command.value),
        ("message_id", command.message_id),
        ("source", command.source),
    ):
        if text is not None and not storable(text):
            raise Invalid(field, "must not contain NUL characters or invalid Unicode")
    if command.as_named is not None:
        _check_naming(command.as_named)
    _bounded(command.title, "title", TITLE_MAX)
    _bounded(command.value, "value", VALUE_MAX)
    _bounded(command.message_id, "message_id", MESSAGE_ID_MAX)
    if command.message_id is not None and not command.message_id:
        raise Invalid("message_id", "must not be empty")
    if command.properties is not None:
        _check_properties(command.properties)
    occurred_at = command.occurred_at or received_at
    if occurred_at.tzinfo is None:
        raise Invalid("occurred_at", "must carry a UTC offset")
    if occurred_at - received_at > FUTURE_TOLERANCE:
        raise Invalid("occurred_at", "is more than 10 minutes in the future")
    return occurred_at.astimezone(UTC)


def in_utc(moment: datetime, field: str) -> datetime:
    """`moment` in UTC; Invalid when UTC cannot represent it (0001-01-01T00:00:00+14:00 is
    before the year 1 there), rather than an OverflowError wherever it is next used."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise Invalid(field, "is out of range: it must fall in the years 1 to 9999 UTC") from None


def parse_timestamp(value: str | float, field: str = "occurred_at") -> datetime:
    """An ISO 8601 time with an offset (`Z` included) or seconds since the Unix epoch, in
    UTC; any time the years 1 to 9999 UTC hold is taken, however long ago."""
    # bool is an int; objects and lists come straight from bodies not parsed by a model
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(field, "must be an ISO 8601 time or seconds since the epoch")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise Invalid(field, "is out of range") from None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(field, "must be an ISO 8601 time or seconds since the epoch") from None
    if parsed.tzinfo is None:
        raise Invalid(field, "must carry a UTC offset, such as Z or +02:00")
    return in_utc(parsed, field)
