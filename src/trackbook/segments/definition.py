"""A segment definition, checked node by node; errors name the path of the bad node.

    {"all": [c, ...]} | {"any": [c, ...]}      groups nest
    {"event": {"name", "title"?, "performed"?: true, "count"?: {"op", "value"}, "within"?}}
    {"recency": {"name", "which": "first"|"last", "op": "before"|"after", "time"}}
    {"property": {"event", "path", "op", "value"?, "within"?}}
    {"value": {"event", "op", "value"?, "within"?}}
    {"contact": {"field": "email"|"email_domain"|"status", "op", "value"?}}
    {"list": {"id", "member"?: true}} | {"tag": {"name", "member"?: true}}

`within` is {"last": N, "unit": "hours"|"days"}, {"between": [from, to]} or absent (ever);
`time` is an ISO 8601 time with an offset, or {"ago": N, "unit": "hours"|"days"}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from trackbook.contacts.identity import is_id
from trackbook.errors import Invalid
from trackbook.events.validation import parse_timestamp
from trackbook.segments.patterns import portable

COUNT_OPS = ("=", "!=", ">", ">=", "<", "<=")
MATCH_OPS = (
    "equals", "not_equals", "contains", "not_contains", ">", "<", "regex", "is_set", "is_not_set",
)  # fmt: skip
CONTACT_FIELDS = ("email", "email_domain", "status")
CONTACT_OPS = ("equals", "not_equals", "contains", "not_contains", "is_set", "is_not_set")
UNITS = {"hours": timedelta(hours=1), "days": timedelta(days=1)}
MAX_DEPTH = 8
MAX_NODES = 200
Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Window:
    """Relative (`last`) windows are resolved against the clock when compiled."""

    last: timedelta | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Group:
    mode: str  # "all" or "any"
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Performed:
    name: str
    title: str | None
    op: str
    count: int
    window: Window | None


@dataclass(frozen=True, slots=True)
class Recency:
    name: str
    which: str  # "first" or "last"
    op: str  # "before" or "after"
    time: datetime | None
    ago: timedelta | None


@dataclass(frozen=True, slots=True)
class Match:
    """A property (path given) or the value (path None) of some event named `event`.
    For `regex`, `value` is the pattern as the databases run it (segments.patterns)."""

    event: str
    path: tuple[str, ...] | None
    op: str
    value: Scalar | None
    window: Window | None


@dataclass(frozen=True, slots=True)
class ContactField:
    field: str
    op: str
    value: str | None


@dataclass(frozen=True, slots=True)
class Membership:
    kind: str  # "list" or "tag"
    key: int | str
    member: bool


Node = Group | Performed | Recency | Match | ContactField | Membership


COUNT_MAX = 1_000_000_000


class _Reader:
    def __init__(self, *, stored: bool = False) -> None:
        self.nodes = 0
        self.stored = stored

    def node(self, raw: Any, path: str, depth: int = 0) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise Invalid(path, f"makes the definition larger than {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise Invalid(path, f"nests groups deeper than {MAX_DEPTH}")
        if not isinstance(raw, dict) or len(raw) != 1:
            raise Invalid(path, "must be an object with exactly one key: all, any or a condition")
        [(kind, body)] = raw.items()
        here = f"{path}.{kind}"
        if kind in ("all", "any"):
            if not isinstance(body, list) or not body:
                raise Invalid(here, "must be a non-empty list")
            return Group(
                kind, tuple(self.node(c, f"{here}.{i}", depth + 1) for i, c in enumerate(body))
            )
        if not isinstance(body, dict):
            raise Invalid(here, "must be an object")
        readers: dict[str, Callable[[dict[str, Any], str], Node]] = {
            "event": self.performed,
            "recency": self.recency,
            "property": self.property,
            "value": self.value,
            "contact": self.contact,
            "list": self.list,
            "tag": self.tag,
        }
        if kind not in readers:
            raise Invalid(path, f"has an unknown condition {kind!r}")
        return readers[kind](body, here)

    @staticmethod
    def _text(body: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
        value = body.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > 255:
            raise Invalid(f"{path}.{key}", "must be a string of 1 to 255 characters")
        return value

    @staticmethod
    def _choice(body: dict[str, Any], key: str, path: str, options: tuple[str, ...]) -> str:
        value = body.get(key)
        if value not in options:
            raise Invalid(f"{path}.{key}", f"must be one of {', '.join(options)}")
        return str(value)

    @staticmethod
    def _known(body: dict[str, Any], path: str, keys: set[str]) -> None:
        for key in body:
            if key not in keys:
                raise Invalid(f"{path}.{key}", "is not a field of this condition")

    @staticmethod
    def _span(raw: Any, path: str) -> timedelta:
        if not isinstance(raw, dict) or set(raw) - {"last", "ago", "unit"}:
            raise Invalid(path, 'must be {"last" or "ago": N, "unit": "hours" or "days"}')
        amount = raw.get("last", raw.get("ago"))
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 100_000:
            raise Invalid(path, "needs a whole number of hours or days from 1 to 100000")
        unit = raw.get("unit")
        if unit not in UNITS:
            raise Invalid(f"{path}.unit", "must be hours or days")
        return amount * UNITS[unit]

    def window(self, raw: Any, path: str) -> Window | None:
        if raw is None:
            return None
        if isinstance(raw, dict) and "between" in raw:
            bounds = raw["between"]
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise Invalid(f"{path}.between", "must be [from, to]")
            start = parse_timestamp(bounds[0], f"{path}.between.0")
            end = parse_timestamp(bounds[1], f"{path}.between.1")
            if end < start:
                raise Invalid(f"{path}.between", "ends before it starts")
            return Window(start=start, end=end)
        return Window(last=self._span(raw, path))

    def performed(self, body: dict[str, Any], path: str) -> Performed:
        self._known(body, path, {"name", "title", "performed", "count", "within"})
        name = self._text(body, "name", path)
        title = self._text(body, "title", path, required=False)
        performed = body.get("performed", True)
        if not isinstance(performed, bool):
            raise Invalid(f"{path}.performed", "must be true or false")
        count = body.get("count")
        if count is None:
            op, number = (">=", 1) if performed else ("=", 0)
        else:
            if not performed:
                raise Invalid(f"{path}.count", "cannot be combined with performed: false")
            if not isinstance(count, dict):
                raise Invalid(f"{path}.count", 'must be {"op": ">=", "value": N}')
            op = self._choice(count, "op", f"{path}.count", COUNT_OPS)
            raw_number = count.get("value")
            if (
                isinstance(raw_number, bool)
                or not isinstance(raw_number, int)
                or not 0 <= raw_number <= COUNT_MAX
            ):
                raise Invalid(f"{path}.count.value", f"must be a whole number, 0 to {COUNT_MAX}")
            number = raw_number
        assert name is not None  # noqa: S101 - required above
        return Performed(name, title, op, number, self.window(body.get("within"), f"{path}.within"))

    def recency(self, body: dict[str, Any], path: str) -> Recency:
        self._known(body, path, {"name", "which", "op", "time"})
        name = self._text(body, "name", path)
        which = self._choice(body, "which", path, ("first", "last"))
        op = self._choice(body, "op", path, ("before", "after"))
        raw = body.get("time")
        if isinstance(raw, dict):
            time, ago = None, self._span(raw, f"{path}.time")
        elif isinstance(raw, str | int | float) and not isinstance(raw, bool):
            time, ago = parse_timestamp(raw, f"{path}.time"), None
        else:
            raise Invalid(f"{path}.time", 'must be an ISO 8601 time or {"ago": N, "unit": ...}')
        assert name is not None  # noqa: S101
        return Recency(name, which, op, time, ago)

    def _match(
        self, body: dict[str, Any], path: str, property_path: tuple[str, ...] | None
    ) -> Match:
        event = self._text(body, "event", path)
        op = self._choice(body, "op", path, MATCH_OPS)
        value = body.get("value")
        if op in ("is_set", "is_not_set"):
            if value is not None:
                raise Invalid(f"{path}.value", f"is not used with {op}")
        elif op in (">", "<"):
            if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > 1e300:
                raise Invalid(f"{path}.value", f"must be a number for {op}")
        elif op in ("contains", "not_contains", "regex"):
            if not isinstance(value, str) or not value:
                raise Invalid(f"{path}.value", f"must be a non-empty string for {op}")
            if op == "regex":
                value = self._pattern(value, f"{path}.value")
        elif not isinstance(value, str | int | float | bool):
            raise Invalid(f"{path}.value", "must be a string, number or boolean")
        assert event is not None  # noqa: S101
        return Match(
            event, property_path, op, value, self.window(body.get("within"), f"{path}.within")
        )

    def _pattern(self, pattern: str, path: str) -> str:
        """The pattern as the databases run it (Match.value of a regex holds this form)."""
        try:
            return portable(pattern, path)
        except Invalid:
            if not self.stored:
                raise
            # saved before segments took only the common subset: run as it always has
            # been (a pattern PostgreSQL refuses makes the segment broken, not a 500)
            return pattern

    def property(self, body: dict[str, Any], path: str) -> Match:
        self._known(body, path, {"event", "path", "op", "value", "within"})
        raw = body.get("path")
        parts = raw.split(".") if isinstance(raw, str) else raw
        if (
            not isinstance(parts, list)
            or not 1 <= len(parts) <= 5
            or not all(isinstance(p, str) and p for p in parts)
        ):
            raise Invalid(f"{path}.path", "must be a dotted path or a list of 1 to 5 keys")
        return self._match(body, path, tuple(parts))

    def value(self, body: dict[str, Any], path: str) -> Match:
        self._known(body, path, {"event", "op", "value", "within"})
        return self._match(body, path, None)

    def contact(self, body: dict[str, Any], path: str) -> ContactField:
        self._known(body, path, {"field", "op", "value"})
        field = self._choice(body, "field", path, CONTACT_FIELDS)
        op = self._choice(body, "op", path, CONTACT_OPS)
        value = body.get("value")
        if op in ("is_set", "is_not_set"):
            return ContactField(field, op, None)
        if not isinstance(value, str) or not value:
            raise Invalid(f"{path}.value", "must be a non-empty string")
        return ContactField(field, op, value)

    def _membership(self, body: dict[str, Any], path: str, kind: str, key: str) -> Membership:
        self._known(body, path, {key, "member"})
        member = body.get("member", True)
        if not isinstance(member, bool):
            raise Invalid(f"{path}.member", "must be true or false")
        raw = body.get(key)
        if kind == "list":
            if isinstance(raw, bool) or not isinstance(raw, int) or not is_id(raw):
                raise Invalid(f"{path}.id", "must be a list id")
            return Membership(kind, raw, member)
        name = self._text(body, key, path)
        assert name is not None  # noqa: S101
        return Membership(kind, name, member)

    def list(self, body: dict[str, Any], path: str) -> Membership:
        return self._membership(body, path, "list", "id")

    def tag(self, body: dict[str, Any], path: str) -> Membership:
        return self._membership(body, path, "tag", "name")


def parse(definition: Any, path: str = "definition", *, stored: bool = False) -> Node:
    """The checked tree of a definition; Invalid names the path of the first bad node.

    `stored`: a definition read back from the database, which may hold a pattern saved
    before the subset of patterns was enforced; such a pattern is run as written."""
    return _Reader(stored=stored).node(definition, path)


def regex_patterns(node: Node, path: str = "definition") -> Iterator[tuple[str, str]]:
    """(path, pattern as run) of each regex condition of a parsed definition."""
    if isinstance(node, Group):
        for index, child in enumerate(node.children):
            yield from regex_patterns(child, f"{path}.{node.mode}.{index}")
    elif isinstance(node, Match) and node.op == "regex":
        kind = "value" if node.path is None else "property"
        yield f"{path}.{kind}.value", str(node.value)


def named_lists(definition: Any) -> set[int]:
    """The ids of the lists a stored definition names, in any group, member or not."""
    if not isinstance(definition, dict):
        return set()
    named: set[int] = set()
    for kind, body in definition.items():
        if kind in ("all", "any") and isinstance(body, list):
            for child in body:
                named |= named_lists(child)
        elif kind == "list" and isinstance(body, dict) and isinstance(body.get("id"), int):
            named.add(body["id"])
    return named


def parse_event_condition(raw: Any, path: str, event: str, *, stored: bool = False) -> Match:
    """A value or property condition on the one event named `event` (an automation's
    trigger): the segment syntax without `event` and `within`, which the trigger fixes.
    `stored` as for parse()."""
    if not isinstance(raw, dict) or len(raw) != 1:
        raise Invalid(path, 'must be {"value": {...}} or {"property": {...}}')
    [(kind, body)] = raw.items()
    here = f"{path}.{kind}"
    if kind not in ("value", "property"):
        raise Invalid(path, f"has an unknown condition {kind!r}; use value or property")
    if not isinstance(body, dict):
        raise Invalid(here, "must be an object")
    for fixed in ("event", "within"):
        if fixed in body:
            raise Invalid(f"{here}.{fixed}", "is set by the trigger and cannot be given here")
    reader = _Reader(stored=stored)
    body = {**body, "event": event}
    return reader.value(body, here) if kind == "value" else reader.property(body, here)
