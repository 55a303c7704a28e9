"""Events a dialect acknowledged without storing (as ActiveCampaign does), kept with why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.contacts.identity import ContactRef
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
"""The message would join two identified contacts into one (for a publishable key: link
a visitor id of one identified contact to another); the link is not made."""
CATALOG_FULL = "catalog_full"
"""The event would bring a new event or property name beyond the account's limits."""
CHANGE_REFUSED = "change_refused"
"""A publishable key asked to change a contact that exists (its email, external id,
names, status or lists): the change is not made; the message's event, if any, is stored."""
UNKNOWN_LIST = "unknown_list"
"""A publishable key named a list the account does not have: the event is stored
without it, and answered as with a list that exists."""


def _identifier(value: Any, limit: int = 255) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if 0 < len(text) <= limit and "\x00" not in text else None


def naming(*, email: Any = None, external_id: Any = None, anonymous_id: Any = None) -> ContactRef:
    """Whom a dropped event names, read leniently (it may be a message Trackbook
    refused): each identifier kept only when it is text of a length a contact's could
    have, the email trimmed and lower-cased as a contact's is. Export and erasure of a
    contact match these exactly."""
    address = _identifier(email, 320)
    return ContactRef(
        email=None if address is None else address.lower(),
        external_id=_identifier(external_id),
        anonymous_id=_identifier(anonymous_id),
    )


def _names(naming: ContactRef) -> dict[str, str | None]:
    return {
        "email": naming.email,
        "external_id": naming.external_id,
        "anonymous_id": naming.anonymous_id,
    }


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
    naming: ContactRef,
    now: datetime,
) -> None:
    await conn.execute(
        dropped_events.insert().values(
            account_id=account_id,
            source=source,
            reason=reason,
            payload=payload,
            received_at=now,
            **_names(naming),
        )
    )
    EVENTS.labels(source, "dropped").inc()


async def record_many(
    conn: AsyncConnection,
    account_id: int,
    *,
    source: str,
    drops: Sequence[tuple[str, dict[str, Any], ContactRef]],
    now: datetime,
) -> None:
    """Several (reason, payload, naming) drops in one statement."""
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
                **_names(naming),
            }
            for reason, payload, naming in drops
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
