"""Everything held about one contact, as one JSON document (the right of access)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.clock import iso
from trackbook.contacts.service import dropped_naming, get_contact_details, list_lists
from trackbook.db.tables import automation_runs, deliveries, dropped_events, events
from trackbook.events.queries import summaries


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {key: iso(value) if hasattr(value, "isoformat") else value for key, value in row.items()}


async def _held(conn: AsyncConnection, statement: sa.Select[Any]) -> list[dict[str, Any]]:
    """The rows of `statement` as JSON objects."""
    return [_jsonable(dict(row._mapping)) for row in await conn.execute(statement)]


async def export_contact(conn: AsyncConnection, account_id: int, contact_id: int) -> dict[str, Any]:
    details = await get_contact_details(conn, account_id, contact_id)
    names = {item.id: item.name for item in await list_lists(conn, account_id)}
    held_events = await _held(
        conn,
        sa.select(events)
        .where(events.c.account_id == account_id, events.c.contact_id == contact_id)
        .order_by(events.c.occurred_at, events.c.id),
    )
    runs = await _held(
        conn,
        sa.select(
            automation_runs.c.id,
            automation_runs.c.automation_id,
            automation_runs.c.event_id,
            automation_runs.c.status,
            automation_runs.c.last_error,
            automation_runs.c.created_at,
        )
        .where(
            automation_runs.c.account_id == account_id,
            automation_runs.c.contact_id == contact_id,
        )
        .order_by(automation_runs.c.id),
    )
    sent = await _held(
        conn,
        sa.select(
            deliveries.c.id,
            deliveries.c.endpoint_id,
            deliveries.c.webhook_id,
            deliveries.c.event_id,
            deliveries.c.status,
            deliveries.c.payload,
            deliveries.c.created_at,
            deliveries.c.delivered_at,
        )
        .where(
            deliveries.c.account_id == account_id,
            deliveries.c.event_id.in_(
                sa.select(events.c.id).where(
                    events.c.account_id == account_id, events.c.contact_id == contact_id
                )
            ),
        )
        .order_by(deliveries.c.id),
    )
    contact = details.contact
    dropped = await _held(
        conn,
        sa.select(
            dropped_events.c.id,
            dropped_events.c.source,
            dropped_events.c.reason,
            dropped_events.c.payload,
            dropped_events.c.received_at,
        )
        .where(await dropped_naming(conn, account_id, contact))
        .order_by(dropped_events.c.id),
    )
    return {
        "contact": {
            "id": contact.id,
            "email": contact.email,
            "external_id": contact.external_id,
            "wp_user_id": contact.wp_user_id,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "phone": contact.phone,
            "status": contact.status,
            "created_at": iso(contact.created_at),
            "updated_at": iso(contact.updated_at),
        },
        "aliases": details.aliases,
        "lists": [{"id": list_id, "name": names.get(list_id)} for list_id in details.list_ids],
        "tags": details.tags,
        "events": held_events,
        "counters": [
            _jsonable(
                {
                    "event_key": counter.name,
                    "title": counter.title,
                    "counter": counter.counter,
                    "last_value": counter.last_value,
                    "provider": counter.provider,
                    "updated_at": counter.updated_at,
                }
            )
            for counter in await summaries(conn, account_id, contact_id)
        ],
        "automation_runs": runs,
        "webhook_deliveries": sent,
        "dropped_events": dropped,
    }
