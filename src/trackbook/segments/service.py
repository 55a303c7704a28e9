"""Store segments, and find, count and preview the contacts they hold."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.automations.references import automations_naming
from trackbook.contacts.service import Contact, contact_from_row
from trackbook.db.tables import contacts, segments
from trackbook.errors import Invalid
from trackbook.segments.compile import Compiler, who
from trackbook.segments.definition import Node, parse, regex_patterns
from trackbook.segments.errors import (
    SegmentBroken,
    SegmentConflict,
    SegmentInUse,
    SegmentNotFound,
)

INVALID_REGULAR_EXPRESSION = "2201B"
"""PostgreSQL's SQLSTATE for a pattern it cannot compile or run."""


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    account_id: int
    name: str
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def _segment(row: sa.Row[Any]) -> Segment:
    return Segment(row.id, row.account_id, row.name, row.definition, row.created_at, row.updated_at)


def _name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name", "must be 1 to 200 characters")
    return name


async def _check_unique(
    conn: AsyncConnection, account_id: int, name: str, segment_id: int | None = None
) -> None:
    holder = await conn.scalar(
        sa.select(segments.c.id).where(segments.c.account_id == account_id, segments.c.name == name)
    )
    if holder is not None and holder != segment_id:
        raise SegmentConflict(f"a segment named {name!r} already exists")


def _refused_pattern(error: sa.exc.DBAPIError) -> str | None:
    """PostgreSQL's reason when `error` is its refusal of a pattern, else None."""
    if getattr(error.orig, "sqlstate", None) == INVALID_REGULAR_EXPRESSION:
        return str(error.orig).splitlines()[0]
    return None


async def check_patterns(conn: AsyncConnection, patterns: Iterable[tuple[str, str]]) -> None:
    """Invalid for the first (path, pattern) the database refuses, asked when a pattern
    is saved. On PostgreSQL only: SQLite runs RE2, which parsing the pattern has asked."""
    if conn.dialect.name != "postgresql":
        return
    for path, pattern in patterns:
        try:
            async with conn.begin_nested():
                await conn.execute(sa.text("SELECT '' ~ :pattern"), {"pattern": pattern})
        except sa.exc.DBAPIError as error:
            reason = _refused_pattern(error)
            if reason is None:
                raise
            raise Invalid(path, f"is refused by PostgreSQL: {reason}") from None


async def _checked(conn: AsyncConnection, definition: Any) -> Node:
    node = parse(definition)
    await check_patterns(conn, regex_patterns(node))
    return node


async def create_segment(
    conn: AsyncConnection, account_id: int, name: str, definition: Any, *, now: datetime
) -> Segment:
    await _checked(conn, definition)
    name = _name(name)
    await _check_unique(conn, account_id, name)
    row = (
        await conn.execute(
            segments.insert()
            .values(
                account_id=account_id,
                name=name,
                definition=definition,
                created_at=now,
                updated_at=now,
            )
            .returning(*segments.c)
        )
    ).one()
    return _segment(row)


async def list_segments(conn: AsyncConnection, account_id: int) -> list[Segment]:
    rows = await conn.execute(
        sa.select(segments).where(segments.c.account_id == account_id).order_by(segments.c.id)
    )
    return [_segment(row) for row in rows]


async def get_segment(conn: AsyncConnection, account_id: int, segment_id: int) -> Segment:
    row = (
        await conn.execute(
            sa.select(segments).where(
                segments.c.account_id == account_id, segments.c.id == segment_id
            )
        )
    ).one_or_none()
    if row is None:
        raise SegmentNotFound(f"segment {segment_id} does not exist")
    return _segment(row)


async def update_segment(
    conn: AsyncConnection,
    account_id: int,
    segment_id: int,
    *,
    now: datetime,
    name: str | None = None,
    definition: Any = None,
) -> Segment:
    await get_segment(conn, account_id, segment_id)
    changes: dict[str, Any] = {"updated_at": now}
    if name is not None:
        changes["name"] = _name(name)
        await _check_unique(conn, account_id, changes["name"], segment_id)
    if definition is not None:
        await _checked(conn, definition)
        changes["definition"] = definition
    row = (
        await conn.execute(
            segments.update()
            .where(segments.c.account_id == account_id, segments.c.id == segment_id)
            .values(**changes)
            .returning(*segments.c)
        )
    ).one()
    return _segment(row)


async def delete_segment(conn: AsyncConnection, account_id: int, segment_id: int) -> None:
    """Refused while an automation's conditions name the segment."""
    await get_segment(conn, account_id, segment_id)
    users = await automations_naming(
        conn, account_id, lambda conditions, _: conditions.get("segment_id") == segment_id
    )
    if users:
        raise SegmentInUse(
            f"segment {segment_id} is used by {', '.join(users)}; change or delete them first"
        )
    await conn.execute(
        segments.delete().where(segments.c.account_id == account_id, segments.c.id == segment_id)
    )


@asynccontextmanager
async def _evaluating(segment: Segment | None) -> AsyncIterator[None]:
    """A pattern PostgreSQL refuses (saved before patterns were checked there) as a 422
    naming the segment, or the definition previewed, rather than a 500."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        reason = _refused_pattern(error)
        if reason is None:
            raise
        if segment is None:
            raise Invalid("definition", f"has a pattern PostgreSQL refuses: {reason}") from None
        raise SegmentBroken(segment.id, segment.name, reason) from None


async def _count(conn: AsyncConnection, account_id: int, node: Node, *, now: datetime) -> int:
    doers = Compiler(account_id, now=now, dialect=conn.dialect.name).only_doers(node)
    if doers is not None:
        total = await conn.scalar(sa.select(sa.func.count()).select_from(doers.subquery()))
        return int(total or 0)
    condition = who(node, account_id, now=now, dialect=conn.dialect.name)
    total = await conn.scalar(sa.select(sa.func.count()).select_from(contacts).where(condition))
    return int(total or 0)


async def _members(
    conn: AsyncConnection,
    account_id: int,
    node: Node,
    *,
    now: datetime,
    after_id: int | None,
    limit: int,
) -> list[Contact]:
    condition = who(node, account_id, now=now, dialect=conn.dialect.name)
    query = sa.select(contacts).where(condition).order_by(contacts.c.id).limit(limit)
    if after_id is not None:
        query = query.where(contacts.c.id > after_id)
    return [contact_from_row(row) for row in await conn.execute(query)]


async def count_members(
    conn: AsyncConnection, account_id: int, definition: Any, *, now: datetime
) -> int:
    """How many contacts a definition not saved (a preview) holds: one COUNT query."""
    node = parse(definition)
    async with _evaluating(None):
        return await _count(conn, account_id, node, now=now)


async def members(
    conn: AsyncConnection,
    account_id: int,
    definition: Any,
    *,
    now: datetime,
    after_id: int | None = None,
    limit: int = 100,
) -> list[Contact]:
    """The contacts a definition not saved holds, by id, `limit` after `after_id`."""
    node = parse(definition)
    async with _evaluating(None):
        return await _members(conn, account_id, node, now=now, after_id=after_id, limit=limit)


async def count_segment(conn: AsyncConnection, segment: Segment, *, now: datetime) -> int:
    """How many contacts a saved segment holds; SegmentBroken if the database cannot tell."""
    node = parse(segment.definition, stored=True)
    async with _evaluating(segment):
        return await _count(conn, segment.account_id, node, now=now)


async def segment_members(
    conn: AsyncConnection,
    segment: Segment,
    *,
    now: datetime,
    after_id: int | None = None,
    limit: int = 100,
) -> list[Contact]:
    """The contacts a saved segment holds, by id, `limit` after `after_id`."""
    node = parse(segment.definition, stored=True)
    async with _evaluating(segment):
        return await _members(
            conn, segment.account_id, node, now=now, after_id=after_id, limit=limit
        )
