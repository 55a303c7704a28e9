"""What a stored event starts: automation runs and webhook deliveries, written in the
event's own transaction (the outbox), so that an event is never committed without them."""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.automations.definition import Conditions, parse_conditions
from trackbook.db.tables import (
    automation_runs,
    automations,
    contacts,
    deliveries,
    events,
    segments,
    webhook_endpoints,
)
from trackbook.db.upsert import upsert
from trackbook.segments.compile import Compiler, who
from trackbook.segments.definition import parse

ALL_EVENTS = "*"
log = logging.getLogger(__name__)


def new_webhook_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


async def start_side_effects(
    conn: AsyncConnection, stored: list[dict[str, Any]], *, now: datetime, cutoff: timedelta
) -> int:
    """Writes the runs and deliveries the stored event rows start; returns how many.

    Events that occurred before `now - cutoff` (imports, backfills) start nothing."""
    recent = [row for row in stored if row["occurred_at"] >= now - cutoff]
    if not recent:
        return 0
    names: dict[int, set[str]] = defaultdict(set)
    for row in recent:
        names[row["account_id"]].add(row["name"])
    return await _start_runs(conn, recent, names, now=now) + await _queue_deliveries(
        conn, recent, names, now=now
    )


async def _start_runs(
    conn: AsyncConnection,
    recent: list[dict[str, Any]],
    names: dict[int, set[str]],
    *,
    now: datetime,
) -> int:
    wanted = sa.or_(
        *(
            sa.and_(automations.c.account_id == account_id, automations.c.trigger_event.in_(n))
            for account_id, n in names.items()
        )
    )
    found = (
        await conn.execute(
            sa.select(
                automations.c.id,
                automations.c.account_id,
                automations.c.trigger_event,
                automations.c.conditions,
                automations.c.frequency,
            ).where(automations.c.enabled, wanted)
        )
    ).all()
    if not found:
        return 0
    by_trigger: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for automation in found:
        by_trigger[automation.account_id, automation.trigger_event].append(automation)
    runs: list[dict[str, Any]] = []
    for row in recent:
        for automation in by_trigger.get((row["account_id"], row["name"]), ()):
            conditions = parse_conditions(automation.conditions, automation.trigger_event)
            if not await _conditions_hold(conn, conditions, row, now=now):
                continue
            runs.append(
                {
                    "account_id": row["account_id"],
                    "automation_id": automation.id,
                    "event_id": row["id"],
                    "contact_id": row["contact_id"],
                    "once_key": row["contact_id"] if automation.frequency == "once" else None,
                    "status": "pending",
                    "step": 0,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    if runs:
        # a second event of a once-per-contact automation, or a replayed event: no run
        await conn.execute(upsert(conn, automation_runs).on_conflict_do_nothing(), runs)
    return len(runs)


async def _conditions_hold(
    conn: AsyncConnection, conditions: Conditions, row: dict[str, Any], *, now: datetime
) -> bool:
    account_id, contact_id = row["account_id"], row["contact_id"]
    checks: list[sa.ColumnElement[bool]] = []
    if conditions.min_count is not None:
        # events of this name up to this one: the third of three tracked together
        # reaches a count of 3, the first two do not
        count = (
            sa.select(sa.func.count())
            .select_from(events)
            .where(
                events.c.account_id == account_id,
                events.c.contact_id == contact_id,
                events.c.name == row["name"],
                events.c.id <= row["id"],
            )
            .scalar_subquery()
        )
        checks.append(count >= conditions.min_count)
    compiler = Compiler(account_id, now=now, dialect=conn.dialect.name)
    for match in conditions.match:
        checks.append(
            sa.exists().where(
                events.c.account_id == account_id,
                events.c.id == row["id"],
                compiler.event_predicate(match),
            )
        )
    contact_checks: list[sa.ColumnElement[bool]] = []
    if conditions.subscribed_only:
        contact_checks.append(contacts.c.status == "subscribed")
    if conditions.segment_id is not None:
        definition = await conn.scalar(
            sa.select(segments.c.definition).where(
                segments.c.account_id == account_id, segments.c.id == conditions.segment_id
            )
        )
        if definition is None:
            return False  # the segment was deleted: nobody is in it
        contact_checks.append(who(parse(definition), account_id, now=now, dialect=compiler.dialect))
    if contact_checks:
        checks.append(
            sa.exists().where(
                contacts.c.account_id == account_id, contacts.c.id == contact_id, *contact_checks
            )
        )
    if not checks:
        return True
    try:
        # a condition the database cannot evaluate must not cost the event its storage
        async with conn.begin_nested():
            return await conn.scalar(sa.select(sa.literal(1)).where(*checks)) is not None
    except sa.exc.DBAPIError as error:
        log.warning("automation conditions could not be evaluated: %s", error.orig)
        return False


async def _queue_deliveries(
    conn: AsyncConnection,
    recent: list[dict[str, Any]],
    names: dict[int, set[str]],
    *,
    now: datetime,
) -> int:
    endpoints = (
        await conn.execute(
            sa.select(
                webhook_endpoints.c.id,
                webhook_endpoints.c.account_id,
                webhook_endpoints.c.event_names,
            ).where(webhook_endpoints.c.enabled, webhook_endpoints.c.account_id.in_(names))
        )
    ).all()
    if not endpoints:
        return 0
    queued = [
        {
            "account_id": row["account_id"],
            "endpoint_id": endpoint.id,
            "webhook_id": new_webhook_id(),
            "event_id": row["id"],
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for row in recent
        for endpoint in endpoints
        if endpoint.account_id == row["account_id"]
        and endpoint.event_names
        and (ALL_EVENTS in endpoint.event_names or row["name"] in endpoint.event_names)
    ]
    if queued:
        await conn.execute(sa.insert(deliveries), queued)
    return len(queued)
