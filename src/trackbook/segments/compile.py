"""A segment definition as one SQL condition on contacts, for SQLite and PostgreSQL."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from trackbook.db.tables import contact_tags, contacts, events, list_members, tags
from trackbook.segments.definition import (
    ContactField,
    Group,
    Match,
    Membership,
    Node,
    Performed,
    Recency,
    Window,
)

# What counts as a number when a property or value holds text, on both databases.
NUMBER = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"
_COUNT_OPS: dict[str, Callable[[Any, int], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class Compiler:
    def __init__(self, account_id: int, *, now: datetime, dialect: str) -> None:
        self.account_id = account_id
        self.now = now
        self.dialect = dialect

    def condition(self, node: Node) -> sa.ColumnElement[bool]:
        match node:
            case Group(mode="all"):
                return sa.and_(*(self.condition(child) for child in node.children))
            case Group():
                return sa.or_(*(self.condition(child) for child in node.children))
            case Performed():
                return self._performed(node)
            case Recency():
                return self._recency(node)
            case Match():
                return self._match(node)
            case ContactField():
                return self._contact(node)
            case Membership():
                return self._membership(node)
        raise TypeError(f"not a segment node: {node!r}")

    def _events_named(self, name: str, window: Window | None) -> list[sa.ColumnElement[bool]]:
        """The account's events of this name in the window, whoever did them.

        Conditions on events are set-based (`contacts.id IN (SELECT contact_id ...)`),
        not a subquery per contact: the database reads the events of that name once,
        through ix_events_name, however many contacts the account has."""
        scope = [events.c.account_id == self.account_id, events.c.name == name]
        if window is not None:
            if window.last is not None:
                scope.append(events.c.occurred_at >= self.now - window.last)
            if window.start is not None:
                scope.append(events.c.occurred_at >= window.start)
            if window.end is not None:
                scope.append(events.c.occurred_at <= window.end)
        return scope

    def only_doers(self, node: Node) -> sa.Select[Any] | None:
        """For a definition that is one event condition which only contacts having such
        events can meet: the distinct ids of those contacts, straight from events (a
        count then never touches the contacts table). None for anything else."""
        while isinstance(node, Group) and len(node.children) == 1:
            node = node.children[0]
        if isinstance(node, Performed) and not _COUNT_OPS[node.op](0, node.count):
            return self._counted(node, having=True)
        if isinstance(node, Match):
            scope = self._events_named(node.event, node.window)
            return (
                sa.select(events.c.contact_id)
                .where(*scope, self.event_predicate(node))
                .group_by(events.c.contact_id)
            )
        if isinstance(node, Recency):
            return self._recent(node)
        return None

    def _counted(self, node: Performed, *, having: bool) -> sa.Select[Any]:
        """Contacts with events of the node, grouped, whose count holds (or fails)."""
        scope = self._events_named(node.name, node.window)
        if node.title is not None:
            scope.append(events.c.title == node.title)
        holds = _COUNT_OPS[node.op](sa.func.count(), node.count)
        return (
            sa.select(events.c.contact_id)
            .where(*scope)
            .group_by(events.c.contact_id)
            .having(holds if having else sa.not_(holds))
        )

    def _performed(self, node: Performed) -> sa.ColumnElement[bool]:
        scope = self._events_named(node.name, node.window)
        if node.title is not None:
            scope.append(events.c.title == node.title)
        doers = sa.select(events.c.contact_id).where(*scope)
        holds = _COUNT_OPS[node.op]
        if holds(0, node.count):
            # contacts with no such event hold too: everyone but those whose count fails
            if (node.op, node.count) in (("=", 0), ("<", 1), ("<=", 0)):
                return contacts.c.id.not_in(doers)
            return contacts.c.id.not_in(self._counted(node, having=False))
        if (node.op, node.count) in ((">=", 1), (">", 0)):
            return contacts.c.id.in_(doers)
        return contacts.c.id.in_(self._counted(node, having=True))

    def _recent(self, node: Recency) -> sa.Select[Any]:
        pick = sa.func.min if node.which == "first" else sa.func.max
        time = node.time if node.time is not None else self.now - (node.ago or timedelta())
        moment = pick(events.c.occurred_at)
        when = moment < time if node.op == "before" else moment > time
        return (
            sa.select(events.c.contact_id)
            .where(*self._events_named(node.name, None))
            .group_by(events.c.contact_id)
            .having(when)
        )

    def _recency(self, node: Recency) -> sa.ColumnElement[bool]:
        return contacts.c.id.in_(self._recent(node))

    def _text(self, node: Match) -> sa.ColumnElement[Any]:
        if node.path is None:
            return events.c.value
        return sa.cast(events.c.properties[node.path].as_string(), sa.Text)

    def _number(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.case((text.regexp_match(NUMBER), sa.cast(text, sa.Float)), else_=None)

    def _is_true(self, node: Match, wanted: bool) -> sa.ColumnElement[bool]:
        assert node.path is not None  # noqa: S101 - booleans live in properties
        if self.dialect == "sqlite":
            kind = sa.func.json_type(
                events.c.properties, "$." + ".".join(f'"{p}"' for p in node.path)
            )
            return kind == ("true" if wanted else "false")
        element = events.c.properties[node.path]
        return sa.and_(
            sa.func.jsonb_typeof(element) == "boolean",
            element.as_string() == ("true" if wanted else "false"),
        )

    def event_predicate(self, node: Match) -> sa.ColumnElement[bool]:
        """The node's value or property test on one row of events."""
        text = self._text(node)
        value = node.value
        match node.op:
            case "is_set":
                return text.is_not(None)
            case "is_not_set":
                return text.is_(None)
            case "contains":
                return sa.func.lower(text).contains(str(value).lower(), autoescape=True)
            case "not_contains":
                return ~sa.func.lower(text).contains(str(value).lower(), autoescape=True)
            case "regex":
                return text.regexp_match(str(value))
            case ">":
                return self._number(text) > value
            case "<":
                return self._number(text) < value
        equal: sa.ColumnElement[bool]
        if isinstance(value, bool):
            equal = self._is_true(node, value) if node.path else text == str(value).lower()
        elif isinstance(value, int | float):
            equal = self._number(text) == value
        else:
            equal = text == value
        if node.op == "equals":
            return equal
        if isinstance(value, bool) or not isinstance(value, int | float):
            # unset is neither equal nor unequal: NULL, as the numeric case gives
            return sa.and_(text.is_not(None), ~equal)
        return self._number(text) != value

    def _match(self, node: Match) -> sa.ColumnElement[bool]:
        scope = self._events_named(node.event, node.window)
        return contacts.c.id.in_(
            sa.select(events.c.contact_id).where(*scope, self.event_predicate(node))
        )

    def _contact(self, node: ContactField) -> sa.ColumnElement[bool]:
        if node.field == "status":
            column: sa.ColumnElement[Any] = contacts.c.status
        elif node.field == "email":
            column = contacts.c.email
        elif self.dialect == "sqlite":
            column = sa.func.substr(contacts.c.email, sa.func.instr(contacts.c.email, "@") + 1)
        else:
            column = sa.func.split_part(contacts.c.email, "@", 2)
        value = (node.value or "").lower() if node.field != "status" else node.value or ""
        match node.op:
            case "is_set":
                return sa.and_(column.is_not(None), column != "")
            case "is_not_set":
                return sa.or_(column.is_(None), column == "")
            case "equals":
                return column == value
            case "not_equals":
                return sa.and_(column.is_not(None), column != value)
            case "contains":
                return column.contains(value, autoescape=True)
        return sa.and_(column.is_not(None), ~column.contains(value, autoescape=True))

    def _membership(self, node: Membership) -> sa.ColumnElement[bool]:
        if node.kind == "list":
            found = sa.exists().where(
                list_members.c.account_id == self.account_id,
                list_members.c.contact_id == contacts.c.id,
                list_members.c.list_id == node.key,
            )
        else:
            found = sa.exists().where(
                contact_tags.c.account_id == self.account_id,
                contact_tags.c.contact_id == contacts.c.id,
                contact_tags.c.tag_id == tags.c.id,
                tags.c.account_id == self.account_id,
                tags.c.name == node.key,
            )
        return found if node.member else ~found


def who(node: Node, account_id: int, *, now: datetime, dialect: str) -> sa.ColumnElement[bool]:
    """The contacts of `account_id` the segment holds, as a WHERE condition on contacts."""
    condition = Compiler(account_id, now=now, dialect=dialect).condition(node)
    return sa.and_(contacts.c.account_id == account_id, condition)
