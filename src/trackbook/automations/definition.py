"""An automation's trigger, conditions and actions, checked field by field.

{"name", "enabled"?, "trigger": {"event": NAME}, "frequency": "once"|"every_time",
 "conditions"?: {"min_count"?: N, "match"?: [{"value": {...}} | {"property": {...}}],
                 "segment_id"?: ID, "subscribed_only"?: bool},
 "actions": [ACTION, ...]}

ACTION is one of
{"type": "webhook", "webhook_id"}                  a signed POST to a registered endpoint
{"type": "email", "subject", "text"?, "html"?, "to"?}   personalised, over SMTP; `to` is
                                                  one address (default: the contact's)
{"type": "add_tag"|"remove_tag", "tag"}
{"type": "add_to_list"|"remove_from_list", "list_id"}
{"type": "wait", "amount", "unit": "seconds"|"minutes"|"hours"|"days"}
{"type": "track", "event", "title"?, "value"?, "properties"?}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from trackbook.contacts.identity import is_id, normalise_email
from trackbook.errors import Invalid
from trackbook.segments.definition import Match, parse_event_condition

FREQUENCIES = ("once", "every_time")
WAIT_UNITS = {
    "seconds": timedelta(seconds=1),
    "minutes": timedelta(minutes=1),
    "hours": timedelta(hours=1),
    "days": timedelta(days=1),
}
MAX_ACTIONS = 50
MAX_TEMPLATE = 100_000
_ACTION_FIELDS: dict[str, set[str]] = {
    "webhook": {"webhook_id"},
    "email": {"subject", "text", "html", "to"},
    "add_tag": {"tag"},
    "remove_tag": {"tag"},
    "add_to_list": {"list_id"},
    "remove_from_list": {"list_id"},
    "wait": {"amount", "unit"},
    "track": {"event", "title", "value", "properties"},
}


@dataclass(frozen=True, slots=True)
class Conditions:
    min_count: int | None = None
    """The contact has this event at least N times, this one included (FluentCRM's
    minimum_event_count)."""
    match: tuple[Match, ...] = ()
    segment_id: int | None = None
    subscribed_only: bool = False


@dataclass(frozen=True, slots=True)
class Definition:
    trigger_event: str
    frequency: str
    conditions: Conditions
    actions: tuple[dict[str, Any], ...]
    raw_conditions: dict[str, Any]


def _text(body: dict[str, Any], key: str, path: str, *, limit: int = 255) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise Invalid(f"{path}.{key}", f"must be a string of 1 to {limit} characters")
    return value


def _id(body: dict[str, Any], key: str, path: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not is_id(value):
        raise Invalid(f"{path}.{key}", "must be an id (a positive whole number below 2^63)")
    return value


def _known(body: dict[str, Any], path: str, keys: set[str]) -> None:
    for key in body:
        if key not in keys:
            raise Invalid(f"{path}.{key}", "is not a field here")


def parse_trigger(raw: Any) -> str:
    if not isinstance(raw, dict):
        raise Invalid("trigger", 'must be {"event": NAME}')
    _known(raw, "trigger", {"event"})
    return _text(raw, "event", "trigger")


def parse_frequency(raw: Any) -> str:
    if raw not in FREQUENCIES:
        raise Invalid("frequency", "must be once or every_time")
    return str(raw)


def parse_conditions(raw: Any, trigger_event: str, *, stored: bool = False) -> Conditions:
    """`stored`: conditions read back from the database (segments.definition.parse)."""
    if raw is None:
        return Conditions()
    if not isinstance(raw, dict):
        raise Invalid("conditions", "must be an object")
    _known(raw, "conditions", {"min_count", "match", "segment_id", "subscribed_only"})
    min_count = raw.get("min_count")
    if min_count is not None and (
        isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1
    ):
        raise Invalid("conditions.min_count", "must be a whole number of 1 or more")
    matches = raw.get("match", [])
    if not isinstance(matches, list) or len(matches) > 20:
        raise Invalid("conditions.match", "must be a list of at most 20 conditions")
    segment_id = _id(raw, "segment_id", "conditions") if "segment_id" in raw else None
    subscribed_only = raw.get("subscribed_only", False)
    if not isinstance(subscribed_only, bool):
        raise Invalid("conditions.subscribed_only", "must be true or false")
    return Conditions(
        min_count,
        tuple(
            parse_event_condition(item, f"conditions.match.{index}", trigger_event, stored=stored)
            for index, item in enumerate(matches)
        ),
        segment_id,
        subscribed_only,
    )


def _email(raw: dict[str, Any], path: str) -> None:
    _text(raw, "subject", path, limit=998)
    if raw.get("text") is None and raw.get("html") is None:
        raise Invalid(path, "needs a text or an html body, or both")
    for part in ("text", "html"):
        if raw.get(part) is not None:
            _text(raw, part, path, limit=MAX_TEMPLATE)
    if raw.get("to") is not None:
        check_recipient(raw["to"], f"{path}.to")


def check_recipient(to: Any, field: str) -> str:
    """Exactly one email address: not a list, not a display name, no header text."""
    if not isinstance(to, str) or len(to) > 320:
        raise Invalid(field, "must be one email address")
    # contacts' rule: one address as email-validator reads it (a comma, a second
    # address, a line break or a "Name <address>" fails)
    return normalise_email(to, field)


def _wait(raw: dict[str, Any], path: str) -> None:
    amount = raw.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 10_000:
        raise Invalid(f"{path}.amount", "must be a whole number from 1 to 10000")
    if raw.get("unit") not in WAIT_UNITS:
        raise Invalid(f"{path}.unit", f"must be one of {', '.join(WAIT_UNITS)}")


def _track(raw: dict[str, Any], path: str) -> None:
    _text(raw, "event", path)
    if raw.get("title") is not None:
        _text(raw, "title", path)
    value = raw.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
        raise Invalid(f"{path}.value", "must be a string or a number")
    if raw.get("properties") is not None and not isinstance(raw["properties"], dict):
        raise Invalid(f"{path}.properties", "must be an object")


def _action(raw: Any, path: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("type") not in _ACTION_FIELDS:
        raise Invalid(f"{path}.type", f"must be one of {', '.join(_ACTION_FIELDS)}")
    kind = raw["type"]
    _known(raw, path, _ACTION_FIELDS[kind] | {"type"})
    match kind:
        case "webhook":
            _id(raw, "webhook_id", path)
        case "email":
            _email(raw, path)
        case "add_tag" | "remove_tag":
            _text(raw, "tag", path, limit=200)
        case "add_to_list" | "remove_from_list":
            _id(raw, "list_id", path)
        case "wait":
            _wait(raw, path)
        case "track":
            _track(raw, path)
    return dict(raw)


def parse_actions(raw: Any, trigger_event: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ACTIONS:
        raise Invalid("actions", f"must be a list of 1 to {MAX_ACTIONS} actions")
    actions = tuple(_action(item, f"actions.{index}") for index, item in enumerate(raw))
    for index, action in enumerate(actions):
        if action["type"] == "track" and action["event"] == trigger_event:
            # it would start itself again with every run, for ever
            raise Invalid(f"actions.{index}.event", "cannot be the automation's own trigger")
    return actions


def wait_of(action: dict[str, Any]) -> timedelta:
    return int(action["amount"]) * WAIT_UNITS[str(action["unit"])]


def parse(body: dict[str, Any], *, stored_conditions: bool = False) -> Definition:
    """`stored_conditions`: the conditions are the ones stored, unchanged (parse_conditions)."""
    trigger_event = parse_trigger(body.get("trigger"))
    raw_conditions = body.get("conditions") or {}
    return Definition(
        trigger_event,
        parse_frequency(body.get("frequency", "every_time")),
        parse_conditions(raw_conditions, trigger_event, stored=stored_conditions),
        parse_actions(body.get("actions"), trigger_event),
        raw_conditions,
    )
