"""Writing a group of events in one transaction: the SQL behind track()."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.automations.triggers import start_side_effects
from trackbook.contacts.errors import ContactNotFound
from trackbook.contacts.identity import ContactRef, UnknownContact
from trackbook.contacts.service import resolve_contacts
from trackbook.db.tables import (
    event_message_ids,
    event_names,
    event_properties,
    event_summaries,
    events,
    list_event_properties,
)
from trackbook.db.upsert import upsert
from trackbook.events.model import PendingEvent, TrackResult

Outcome = TrackResult | ContactNotFound


async def _replayed(
    conn: AsyncConnection, group: list[PendingEvent]
) -> dict[tuple[int, str], TrackResult]:
    """Events already stored under the message ids of this group."""
    by_account: dict[int, set[str]] = defaultdict(set)
    for pending in group:
        if pending.command.message_id is not None:
            by_account[pending.account_id].add(pending.command.message_id)
    found: dict[tuple[int, str], TrackResult] = {}
    for account_id, message_ids in by_account.items():
        # the keys first (a primary-key lookup), then only the events they name: joining
        # the partitioned events table by id alone would visit every partition
        known = dict(
            (
                await conn.execute(
                    sa.select(event_message_ids.c.event_id, event_message_ids.c.message_id).where(
                        event_message_ids.c.account_id == account_id,
                        event_message_ids.c.message_id.in_(message_ids),
                    )
                )
            ).all()
        )
        if not known:
            continue
        rows = await conn.execute(
            sa.select(
                events.c.id, events.c.contact_id, events.c.occurred_at, events.c.received_at
            ).where(events.c.account_id == account_id, events.c.id.in_(list(known)))
        )
        for row in rows:
            found[account_id, known[row.id]] = TrackResult(
                row.id, row.contact_id, row.occurred_at, row.received_at, duplicate=True
            )
    return found


async def _contact_ids(
    conn: AsyncConnection, group: list[PendingEvent], *, now: datetime
) -> dict[tuple[int, ContactRef], int | ContactNotFound]:
    wanted: dict[int, dict[ContactRef, UnknownContact]] = defaultdict(dict)
    for pending in group:
        wanted[pending.account_id].setdefault(
            pending.command.contact, pending.command.unknown_contact
        )
    resolved: dict[tuple[int, ContactRef], int | ContactNotFound] = {}
    for account_id, refs in wanted.items():
        for ref, outcome in (await resolve_contacts(conn, account_id, refs, now=now)).items():
            resolved[account_id, ref] = outcome
    return resolved


async def write_group(
    conn: AsyncConnection,
    group: list[PendingEvent],
    *,
    now: datetime,
    automation_cutoff: timedelta = timedelta(hours=72),
) -> tuple[list[Outcome], int]:
    """Stores every event of `group` that can be stored, inside the caller's transaction,
    with the automation runs and webhook deliveries they start (how many is returned).

    A replayed message id and an unknown contact are outcomes of that one event;
    any exception means the whole transaction must be rolled back.
    """
    side_effects = 0
    replayed = await _replayed(conn, group)
    contact_ids = await _contact_ids(conn, group, now=now)
    outcomes: list[Outcome | None] = [None] * len(group)
    to_insert: list[int] = []
    first_of_message: dict[tuple[int, str], int] = {}
    repeats: dict[int, int] = {}
    for index, pending in enumerate(group):
        command = pending.command
        if command.message_id is not None:
            key = (pending.account_id, command.message_id)
            if key in replayed:
                outcomes[index] = replayed[key]
                continue
            if key in first_of_message:
                repeats[index] = first_of_message[key]
                continue
        contact = contact_ids[pending.account_id, command.contact]
        if isinstance(contact, ContactNotFound):
            outcomes[index] = contact
            continue
        if command.message_id is not None:
            first_of_message[pending.account_id, command.message_id] = index
        to_insert.append(index)

    if to_insert:
        rows = [_event_row(group[index], contact_ids) for index in to_insert]
        inserted = await conn.execute(
            sa.insert(events).returning(events.c.id, sort_by_parameter_order=True), rows
        )
        for row, event_id in zip(rows, inserted.scalars(), strict=True):
            row["id"] = event_id
        keys = [
            {
                "account_id": row["account_id"],
                "message_id": row["message_id"],
                "event_id": row["id"],
            }
            for row in rows
            if row["message_id"] is not None
        ]
        if keys:
            # the unique key: a message id stored meanwhile by another process fails the
            # group here, and the writer then stores each event alone (a duplicate)
            await conn.execute(sa.insert(event_message_ids), keys)
        stored = [(group[index], rows[n]) for n, index in enumerate(to_insert)]
        summary_ids = await _count_summaries(conn, stored, now=now)
        await _catalog(conn, stored)
        side_effects = await start_side_effects(conn, rows, now=now, cutoff=automation_cutoff)
        for index, row in zip(to_insert, rows, strict=True):
            outcomes[index] = TrackResult(
                row["id"],
                row["contact_id"],
                row["occurred_at"],
                row["received_at"],
                duplicate=False,
                summary_id=summary_ids[row["id"]],
            )

    for index, original in repeats.items():
        first = outcomes[original]
        assert isinstance(first, TrackResult)  # noqa: S101 - set in the loop above
        outcomes[index] = TrackResult(
            first.event_id, first.contact_id, first.occurred_at, first.received_at, duplicate=True
        )
    return [outcome for outcome in outcomes if outcome is not None], side_effects


def _event_row(
    pending: PendingEvent, contact_ids: dict[tuple[int, ContactRef], int | ContactNotFound]
) -> dict[str, Any]:
    command = pending.command
    return {
        "account_id": pending.account_id,
        "contact_id": contact_ids[pending.account_id, command.contact],
        "name": command.name,
        "title": command.title,
        "value": command.value,
        "properties": command.properties,
        "source": command.source,
        "message_id": command.message_id,
        "list_id": command.list_id,
        "occurred_at": pending.occurred_at,
        "received_at": pending.received_at,
    }


async def _count_summaries(
    conn: AsyncConnection, stored: list[tuple[PendingEvent, dict[str, Any]]], *, now: datetime
) -> dict[int, int]:
    """Counts each event in its (contact, name, title) counter; returns the counter id
    of every event id. One upsert per counter however many events of the group it
    counts, in key order so that two processes lock counters in the same order."""
    summaries: dict[tuple[int, int, str, str, int], dict[str, Any]] = {}
    counted_in: dict[int, tuple[int, int, str, str, int]] = {}
    for pending, row in stored:
        series = 0 if pending.command.repeatable else row["id"]
        key = (row["account_id"], row["contact_id"], row["name"], row["title"] or "", series)
        counted_in[row["id"]] = key
        provider = pending.command.provider or row["source"]
        summary = summaries.get(key)
        if summary is None:
            summaries[key] = {
                "account_id": key[0],
                "contact_id": key[1],
                "name": key[2],
                "title": key[3],
                "series": series,
                "counter": 1,
                "last_value": row["value"],
                "provider": provider,
                "created_at": now,
                "updated_at": now,
            }
        else:
            summary["counter"] += 1
            summary["last_value"] = row["value"]
            summary["provider"] = provider
    keys = sorted(summaries)
    statement = upsert(conn, event_summaries)
    upserted = await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["account_id", "contact_id", "name", "title", "series"],
            set_={
                "counter": event_summaries.c.counter + statement.excluded.counter,
                "last_value": statement.excluded.last_value,
                "provider": statement.excluded.provider,
                "updated_at": statement.excluded.updated_at,
            },
        ).returning(event_summaries.c.id, sort_by_parameter_order=True),
        [summaries[key] for key in keys],
    )
    summary_ids = dict(zip(keys, upserted.scalars(), strict=True))
    return {event_id: summary_ids[key] for event_id, key in counted_in.items()}


async def _catalog(
    conn: AsyncConnection, stored: list[tuple[PendingEvent, dict[str, Any]]]
) -> None:
    names: dict[tuple[int, str], dict[str, Any]] = {}
    properties: set[tuple[int, str, str]] = set()
    list_properties: set[tuple[int, int, str, str]] = set()
    for _, row in stored:
        key = (row["account_id"], row["name"])
        seen = names.get(key)
        if seen is None:
            names[key] = {
                "account_id": key[0],
                "name": key[1],
                "count": 1,
                "first_seen": row["occurred_at"],
                "last_seen": row["occurred_at"],
            }
        else:
            seen["count"] += 1
            seen["first_seen"] = min(seen["first_seen"], row["occurred_at"])
            seen["last_seen"] = max(seen["last_seen"], row["occurred_at"])
        for property_name in row["properties"] or ():
            properties.add((row["account_id"], row["name"], property_name[:255]))
            if row["list_id"] is not None:
                list_properties.add(
                    (row["account_id"], row["list_id"], row["name"], property_name[:255])
                )
    statement = upsert(conn, event_names)
    excluded = statement.excluded
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["account_id", "name"],
            set_={
                "count": event_names.c.count + excluded.count,
                # a name whitelisted before it was ever tracked has count 0 and
                # placeholder times that the first events replace
                "first_seen": sa.case(
                    (event_names.c.count == 0, excluded.first_seen),
                    (excluded.first_seen < event_names.c.first_seen, excluded.first_seen),
                    else_=event_names.c.first_seen,
                ),
                "last_seen": sa.case(
                    (event_names.c.count == 0, excluded.last_seen),
                    (excluded.last_seen > event_names.c.last_seen, excluded.last_seen),
                    else_=event_names.c.last_seen,
                ),
            },
        ),
        [names[key] for key in sorted(names)],
    )
    if properties:
        first_seen = {key: names[key]["first_seen"] for key in names}
        await conn.execute(
            upsert(conn, event_properties).on_conflict_do_nothing(),
            [
                {
                    "account_id": account_id,
                    "event_name": event_name,
                    "name": property_name,
                    "first_seen": first_seen[account_id, event_name],
                }
                for account_id, event_name, property_name in sorted(properties)
            ],
        )
    if list_properties:
        await conn.execute(
            upsert(conn, list_event_properties).on_conflict_do_nothing(),
            [
                {"account_id": account_id, "list_id": list_id, "event_name": event, "name": name}
                for account_id, list_id, event, name in sorted(list_properties)
            ],
        )
