"""The event-name whitelist: names marked for use in automations (ActiveCampaign's)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.db.tables import event_names
from trackbook.db.upsert import upsert
from trackbook.errors import Conflict, Invalid, NotFound
from trackbook.events.validation import NAME_MAX


async def whitelist(conn: AsyncConnection, account_id: int, name: str, *, now: datetime) -> str:
    """Marks the name; a name never tracked yet enters the catalog with count 0."""
    if not name.strip() or len(name) > NAME_MAX:
        raise Invalid("name", f"must be 1 to {NAME_MAX} characters")
    current = await conn.scalar(
        sa.select(event_names.c.whitelisted).where(
            event_names.c.account_id == account_id, event_names.c.name == name
        )
    )
    if current:
        raise Conflict(f"the event name {name!r} is already whitelisted")
    statement = upsert(conn, event_names).values(
        account_id=account_id, name=name, count=0, first_seen=now, last_seen=now, whitelisted=True
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["account_id", "name"], set_={"whitelisted": True}
        )
    )
    return name


async def whitelisted(
    conn: AsyncConnection, account_id: int, *, offset: int = 0, limit: int = 20
) -> tuple[int, list[str]]:
    scope = sa.and_(event_names.c.account_id == account_id, event_names.c.whitelisted)
    total = await conn.scalar(sa.select(sa.func.count()).select_from(event_names).where(scope))
    names = await conn.scalars(
        sa.select(event_names.c.name)
        .where(scope)
        .order_by(event_names.c.name)
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), list(names)


async def unwhitelist(conn: AsyncConnection, account_id: int, name: str) -> None:
    """Removes the mark only: events already logged under the name stay."""
    scope = sa.and_(
        event_names.c.account_id == account_id,
        event_names.c.name == name,
        event_names.c.whitelisted,
    )
    removed = await conn.execute(event_names.update().where(scope).values(whitelisted=False))
    if not removed.rowcount:
        raise NotFound(f"no whitelisted event is named {name!r}")
    await conn.execute(
        event_names.delete().where(
            event_names.c.account_id == account_id,
            event_names.c.name == name,
            event_names.c.count == 0,
        )
    )
