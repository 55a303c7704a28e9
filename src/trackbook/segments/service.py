"""Store segments, and find, count and preview the contacts they hold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.contacts.service import Contact, contact_from_row
from trackbook.db.tables import contacts, segments
from trackbook.errors import Invalid
from trackbook.segments.compile import Compiler, who
from trackbook.segments.definition import parse
from trackbook.segments.errors import SegmentConflict, SegmentNotFound


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    name: str
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def _segment(row: sa.Row[Any]) -> Segment:
    return Segment(row.id, row.name, row.definition, row.created_at, row.updated_at)


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


async def create_segment(
    conn: AsyncConnection, account_id: int, name: str, definition: Any, *, now: datetime
) -> Segment:
    parse(definition)
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
        parse(definition)
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
    await get_segment(conn, account_id, segment_id)
    await conn.execute(
        segments.delete().where(segments.c.account_id == account_id, segments.c.id == segment_id)
    )


async def count_members(
    conn: AsyncConnection, account_id: int, definition: Any, *, now: datetime
) -> int:
    """How many contacts the definition holds: one COUNT query."""
    node = parse(definition)
    doers = Compiler(account_id, now=now, dialect=conn.dialect.name).only_doers(node)
    if doers is not None:
        total = await conn.scalar(sa.select(sa.func.count()).select_from(doers.subquery()))
        return int(total or 0)
    condition = who(node, account_id, now=now, dialect=conn.dialect.name)
    total = await conn.scalar(sa.select(sa.func.count()).select_from(contacts).where(condition))
    return int(total or 0)


async def members(
    conn: AsyncConnection,
    account_id: int,
    definition: Any,
    *,
    now: datetime,
    after_id: int | None = None,
    limit: int = 100,
) -> list[Contact]:
    """The contacts the definition holds, by id, `limit` after `after_id`."""
    condition = who(parse(definition), account_id, now=now, dialect=conn.dialect.name)
    query = sa.select(contacts).where(condition).order_by(contacts.c.id).limit(limit)
    if after_id is not None:
        query = query.where(contacts.c.id > after_id)
    return [contact_from_row(row) for row in await conn.execute(query)]
