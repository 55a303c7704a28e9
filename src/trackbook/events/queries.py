"""Reading the event store: a contact's timeline, the name and property catalog."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.db.tables import (
    event_names,
    event_properties,
    event_summaries,
    events,
    list_event_properties,
)
from trackbook.errors import Invalid, NotFound
from trackbook.events.model import Event


@dataclass(frozen=True, slots=True)
class EventName:
    name: str
    count: int
    first_seen: datetime
    last_seen: datetime
    whitelisted: bool


@dataclass(frozen=True, slots=True)
class EventSummary:
    id: int
    contact_id: int
    name: str
    title: str
    counter: int
    last_value: str | None
    provider: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    events: list[Event]
    next_cursor: str | None


def encode_cursor(occurred_at: datetime, event_id: int) -> str:
    raw = orjson.dumps([occurred_at.isoformat(), event_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        occurred_at, event_id = orjson.loads(raw)
        return datetime.fromisoformat(occurred_at), int(event_id)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise Invalid("cursor", "is not a cursor this server issued") from None


def _event(row: sa.Row[Any]) -> Event:
    return Event(
        id=row.id,
        contact_id=row.contact_id,
        name=row.name,
        title=row.title,
        value=row.value,
        properties=row.properties,
        source=row.source,
        message_id=row.message_id,
        occurred_at=row.occurred_at,
        received_at=row.received_at,
    )


async def timeline(
    conn: AsyncConnection,
    account_id: int,
    contact_id: int,
    *,
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """A contact's events, newest first, `limit` at a time (keyset pagination)."""
    query = (
        sa.select(events)
        .where(events.c.account_id == account_id, events.c.contact_id == contact_id)
        .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        .limit(limit + 1)
    )
    if name is not None:
        query = query.where(events.c.name == name)
    if since is not None:
        query = query.where(events.c.occurred_at >= since)
    if until is not None:
        query = query.where(events.c.occurred_at < until)
    if cursor is not None:
        before_at, before_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                events.c.occurred_at < before_at,
                sa.and_(events.c.occurred_at == before_at, events.c.id < before_id),
            )
        )
    rows = (await conn.execute(query)).all()
    page = [_event(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(page, encode_cursor(page[-1].occurred_at, page[-1].id) if more else None)


async def summaries(conn: AsyncConnection, account_id: int, contact_id: int) -> list[EventSummary]:
    """The per-(name, title) counters of a contact, most recently updated first."""
    rows = await conn.execute(
        sa.select(event_summaries)
        .where(
            event_summaries.c.account_id == account_id,
            event_summaries.c.contact_id == contact_id,
        )
        .order_by(event_summaries.c.updated_at.desc(), event_summaries.c.id.desc())
    )
    return [_summary(row) for row in rows]


async def summaries_page(
    conn: AsyncConnection, account_id: int, contact_id: int, *, offset: int, limit: int
) -> tuple[int, list[EventSummary]]:
    """A contact's counters, newest row first, with how many there are in all."""
    scope = sa.and_(
        event_summaries.c.account_id == account_id, event_summaries.c.contact_id == contact_id
    )
    total = await conn.scalar(sa.select(sa.func.count()).select_from(event_summaries).where(scope))
    rows = await conn.execute(
        sa.select(event_summaries)
        .where(scope)
        .order_by(event_summaries.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), [_summary(row) for row in rows]


def _summary(row: sa.Row[Any]) -> EventSummary:
    return EventSummary(
        id=row.id,
        contact_id=row.contact_id,
        name=row.name,
        title=row.title,
        counter=row.counter,
        last_value=row.last_value,
        provider=row.provider,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def list_event_names(conn: AsyncConnection, account_id: int) -> list[EventName]:
    """Names tracked at least once; a name only whitelisted (count 0) is not listed."""
    rows = await conn.execute(
        sa.select(event_names)
        .where(event_names.c.account_id == account_id, event_names.c.count > 0)
        .order_by(event_names.c.name)
    )
    return [
        EventName(row.name, row._mapping["count"], row.first_seen, row.last_seen, row.whitelisted)
        for row in rows
    ]


async def catalog_page(
    conn: AsyncConnection, account_id: int, *, offset: int, limit: int
) -> tuple[int, list[tuple[EventName, list[str]]]]:
    """Names tracked at least once, by name, `limit` of them from `offset`, each with its
    property names (sorted), and how many names there are in all: one query, however
    many names the account has."""
    page = (
        sa.select(event_names, sa.func.count().over().label("total"))
        .where(event_names.c.account_id == account_id, event_names.c.count > 0)
        .order_by(event_names.c.name)
        .offset(offset)
        .limit(limit)
        .subquery()
    )
    described = page.outerjoin(
        event_properties,
        sa.and_(
            event_properties.c.account_id == page.c.account_id,
            event_properties.c.event_name == page.c.name,
        ),
    )
    rows = await conn.execute(
        sa.select(page, event_properties.c.name.label("property_name"))
        .select_from(described)
        .order_by(page.c.name, event_properties.c.name)
    )
    total = 0
    found: dict[str, tuple[EventName, list[str]]] = {}
    for row in rows:
        total = int(row.total)
        entry = found.get(row.name)
        if entry is None:
            entry = found[row.name] = (
                EventName(
                    row.name, row._mapping["count"], row.first_seen, row.last_seen, row.whitelisted
                ),
                [],
            )
        if row.property_name is not None:
            entry[1].append(row.property_name)
    if not found and offset:
        # past the last page: the count is not in a row, so ask for it
        counted = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(event_names)
            .where(event_names.c.account_id == account_id, event_names.c.count > 0)
        )
        total = int(counted or 0)
    return total, list(found.values())


async def event_name_properties(
    conn: AsyncConnection, account_id: int, name: str
) -> list[str] | None:
    """Property names seen with an event name; None when the name was never tracked."""
    known = await conn.scalar(
        sa.select(event_names.c.name).where(
            event_names.c.account_id == account_id,
            event_names.c.name == name,
            event_names.c.count > 0,
        )
    )
    if known is None:
        return None
    rows = await conn.scalars(
        sa.select(event_properties.c.name)
        .where(
            event_properties.c.account_id == account_id,
            event_properties.c.event_name == name,
        )
        .order_by(event_properties.c.name)
    )
    return list(rows)


async def list_properties(
    conn: AsyncConnection, account_id: int, list_id: int
) -> dict[str, list[str]]:
    """Property names of the events tracked with a list, by event name, both sorted."""
    rows = await conn.execute(
        sa.select(list_event_properties.c.event_name, list_event_properties.c.name)
        .where(
            list_event_properties.c.account_id == account_id,
            list_event_properties.c.list_id == list_id,
        )
        .order_by(list_event_properties.c.event_name, list_event_properties.c.name)
    )
    found: dict[str, list[str]] = {}
    for event_name, name in rows:
        found.setdefault(event_name, []).append(name)
    return found


async def events_page(
    conn: AsyncConnection, account_id: int, contact_id: int, *, offset: int, limit: int
) -> tuple[int, list[Event]]:
    """A contact's events newest first, by offset, with how many there are in all."""
    scope = sa.and_(events.c.account_id == account_id, events.c.contact_id == contact_id)
    total = await conn.scalar(sa.select(sa.func.count()).select_from(events).where(scope))
    rows = await conn.execute(
        sa.select(events)
        .where(scope)
        .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), [_event(row) for row in rows]


async def get_event(conn: AsyncConnection, account_id: int, event_id: int) -> Event:
    row = (
        await conn.execute(
            sa.select(events).where(events.c.account_id == account_id, events.c.id == event_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"event {event_id} does not exist")
    return _event(row)


async def hourly_counts(
    conn: AsyncConnection, account_id: int, *, since: datetime
) -> list[tuple[datetime, int]]:
    """Events per hour (UTC) since `since`: small enough to regroup by day in any time
    zone, and the same SQL shape on both databases."""
    if conn.dialect.name == "sqlite":
        hour: sa.ColumnElement[Any] = sa.func.strftime("%Y-%m-%dT%H:00:00", events.c.occurred_at)
    else:
        hour = sa.func.to_char(
            sa.func.date_trunc("hour", sa.func.timezone("UTC", events.c.occurred_at)),
            'YYYY-MM-DD"T"HH24:00:00',
        )
    rows = await conn.execute(
        sa.select(hour.label("hour"), sa.func.count())
        .where(events.c.account_id == account_id, events.c.occurred_at >= since)
        .group_by(hour)
        .order_by(hour)
    )
    return [(datetime.fromisoformat(row[0]).replace(tzinfo=UTC), int(row[1])) for row in rows]


async def recently_active(
    conn: AsyncConnection, account_id: int, *, limit: int = 10
) -> list[tuple[int, datetime]]:
    """Contacts by their latest event, newest first: (contact id, latest occurred_at)."""
    latest = sa.func.max(events.c.occurred_at).label("latest")
    rows = await conn.execute(
        sa.select(events.c.contact_id, latest)
        .where(events.c.account_id == account_id)
        .group_by(events.c.contact_id)
        .order_by(latest.desc())
        .limit(limit)
    )
    return [(row.contact_id, row.latest) for row in rows]


async def recent_of_name(
    conn: AsyncConnection, account_id: int, name: str, *, limit: int = 50
) -> list[Event]:
    rows = await conn.execute(
        sa.select(events)
        .where(events.c.account_id == account_id, events.c.name == name)
        .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        .limit(limit)
    )
    return [_event(row) for row in rows]
