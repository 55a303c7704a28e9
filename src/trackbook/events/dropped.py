"""Events a dialect acknowledged without storing (as ActiveCampaign does), kept with why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.db.tables import dropped_events
from trackbook.metrics import EVENTS

UNKNOWN_CONTACT = "unknown_contact"
TRACKING_DISABLED = "tracking_disabled"
INVALID = "invalid"
"""One message of a batch the dialect could not read; the payload says why."""
TOO_LARGE = "too_large"
NOT_SUPPORTED = "not_supported"
"""A kind of message Trackbook does not store (Segment's group)."""
IDENTITY_CONFLICT = "identity_conflict"
"""The message would join two identified contacts into one."""
CATALOG_FULL = "catalog_full"
"""The event would bring a new event or property name beyond the account's limits."""


@dataclass(frozen=True, slots=True)
class DroppedEvent:
    id: int
    source: str
    reason: str
    payload: dict[str, Any]
    received_at: datetime


async def record(
    conn: AsyncConnection,
    account_id: int,
    *,
    source: str,
    reason: str,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    await conn.execute(
        dropped_events.insert().values(
            account_id=account_id, source=source, reason=reason, payload=payload, received_at=now
        )
    )
    EVENTS.labels(source, "dropped").inc()


async def record_many(
    conn: AsyncConnection,
    account_id: int,
    *,
    source: str,
    drops: Sequence[tuple[str, dict[str, Any]]],
    now: datetime,
) -> None:
    """Several (reason, payload) drops in one statement."""
    if not drops:
        return
    await conn.execute(
        dropped_events.insert(),
        [
            {
                "account_id": account_id,
                "source": source,
                "reason": reason,
                "payload": payload,
                "received_at": now,
            }
            for reason, payload in drops
        ],
    )
    EVENTS.labels(source, "dropped").inc(len(drops))


def record_in_transaction(
    conn: sa.Connection,
    account_id: int,
    *,
    source: str,
    reason: str,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    """As record(), inside a transaction written synchronously (the event writer's)."""
    conn.execute(
        dropped_events.insert().values(
            account_id=account_id, source=source, reason=reason, payload=payload, received_at=now
        )
    )
    EVENTS.labels(source, "dropped").inc()


async def newest(
    conn: AsyncConnection, account_id: int, *, before_id: int | None = None, limit: int = 50
) -> list[DroppedEvent]:
    query = (
        sa.select(dropped_events)
        .where(dropped_events.c.account_id == account_id)
        .order_by(dropped_events.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(dropped_events.c.id < before_id)
    return [
        DroppedEvent(row.id, row.source, row.reason, row.payload, row.received_at)
        for row in await conn.execute(query)
    ]


async def count(conn: AsyncConnection, account_id: int) -> int:
    total = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(dropped_events)
        .where(dropped_events.c.account_id == account_id)
    )
    return int(total or 0)
