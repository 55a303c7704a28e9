"""What a stored event starts: automation runs and webhook deliveries, written in the
event's own transaction (the outbox), so that an event is never committed without them."""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from trackbook.automations.definition import Conditions, parse_conditions
from trackbook.db.tables import (
    automation_runs,
    contacts,
    deliveries,
    events,
    segments,
)
from trackbook.db.upsert import upsert
from trackbook.segments.compile import Compiler, who
from trackbook.segments.definition import parse

ALL_EVENTS = "*"
log = logging.getLogger(__name__)


def new_webhook_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


# Every enabled automation and webhook endpoint the group's events may start, in one
# statement written for the driver (it runs for every group the event writer commits):
# automations by (account, trigger event), endpoints by account. JSON columns come back
# as text from both databases.
_TRIGGERS_POSTGRESQL = """
SELECT 'automation', id, account_id, trigger_event, conditions::text, frequency
FROM automations
WHERE enabled AND (account_id, trigger_event) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))
UNION ALL
SELECT 'endpoint', id, account_id, NULL, event_names::text, NULL
FROM webhook_endpoints
WHERE enabled AND account_id = ANY($3::bigint[])"""


def _triggers_sqlite(pairs: int, accounts: int) -> str:
    return f"""
SELECT 'automation', id, account_id, trigger_event, conditions, frequency
FROM automations
WHERE enabled AND (account_id, trigger_event) IN (VALUES {", ".join(["(?, ?)"] * pairs)})
UNION ALL
SELECT 'endpoint', id, account_id, NULL, event_names, NULL
FROM webhook_endpoints
WHERE enabled AND account_id IN ({", ".join("?" * accounts)})"""


@dataclass(frozen=True, slots=True)
class _Automation:
    id: int
    trigger_event: str
    conditions: Conditions
    frequency: str


@dataclass(frozen=True, slots=True)
class _Endpoint:
    id: int
    event_names: list[str] | None


def start_side_effects(
    conn: sa.Connection, stored: list[dict[str, Any]], *, now: datetime, cutoff: timedelta
) -> int:
    """Writes the runs and deliveries the stored event rows start; returns how many.

    Events that occurred before `now - cutoff` (imports, backfills) start nothing."""
    recent = [row for row in stored if row["occurred_at"] >= now - cutoff]
    if not recent:
        return 0
    automations_by_trigger, endpoints_by_account = _triggers(conn, recent)
    started = 0
    if automations_by_trigger:
        started += _start_runs(conn, recent, automations_by_trigger, now=now)
    if endpoints_by_account:
        started += _queue_deliveries(conn, recent, endpoints_by_account, now=now)
    return started


def _triggers(
    conn: sa.Connection, recent: list[dict[str, Any]]
) -> tuple[dict[tuple[int, str], list[_Automation]], dict[int, list[_Endpoint]]]:
    pairs = sorted({(row["account_id"], row["name"]) for row in recent})
    account_ids = sorted({account_id for account_id, _ in pairs})
    if conn.dialect.name == "postgresql":
        found = conn.exec_driver_sql(
            _TRIGGERS_POSTGRESQL,
            ([pair[0] for pair in pairs], [pair[1] for pair in pairs], account_ids),
        )
    else:
        found = conn.exec_driver_sql(
            _triggers_sqlite(len(pairs), len(account_ids)),
            (*(value for pair in pairs for value in pair), *account_ids),
        )
    automations_by_trigger: dict[tuple[int, str], list[_Automation]] = defaultdict(list)
    endpoints_by_account: dict[int, list[_Endpoint]] = defaultdict(list)
    for kind, row_id, account_id, trigger_event, detail, frequency in found:
        parsed = None if detail is None else orjson.loads(detail)
        if kind == "automation":
            automations_by_trigger[account_id, trigger_event].append(
                _Automation(
                    row_id,
                    trigger_event,
                    parse_conditions(parsed, trigger_event, stored=True),
                    frequency,
                )
            )
        else:
            endpoints_by_account[account_id].append(_Endpoint(row_id, parsed))
    return automations_by_trigger, endpoints_by_account


def _start_runs(
    conn: sa.Connection,
    recent: list[dict[str, Any]],
    by_trigger: dict[tuple[int, str], list[_Automation]],
    *,
    now: datetime,
) -> int:
    runs: list[dict[str, Any]] = []
    for row in recent:
        # an incoming event is the origin of the runs it starts; an event an
        # automation recorded passes its origin on, one step further
        derivation = row.get("derived_from")
        origin_event_id = row["id"] if derivation is None else derivation.origin_event_id
        depth = 0 if derivation is None else derivation.depth
        for automation in by_trigger.get((row["account_id"], row["name"]), ()):
            if not _conditions_hold(conn, automation.conditions, row, now=now):
                continue
            runs.append(
                {
                    "account_id": row["account_id"],
                    "automation_id": automation.id,
                    "event_id": row["id"],
                    "contact_id": row["contact_id"],
                    "origin_event_id": origin_event_id,
                    "depth": depth,
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
        conn.execute(upsert(conn, automation_runs).on_conflict_do_nothing(), runs)
    return len(runs)


def _conditions_hold(
    conn: sa.Connection, conditions: Conditions, row: dict[str, Any], *, now: datetime
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
        definition = conn.scalar(
            sa.select(segments.c.definition).where(
                segments.c.account_id == account_id, segments.c.id == conditions.segment_id
            )
        )
        if definition is None:
            return False  # the segment was deleted: nobody is in it
        contact_checks.append(
            who(parse(definition, stored=True), account_id, now=now, dialect=compiler.dialect)
        )
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
        with conn.begin_nested():
            return conn.scalar(sa.select(sa.literal(1)).where(*checks)) is not None
    except sa.exc.DBAPIError as error:
        log.warning("automation conditions could not be evaluated: %s", error.orig)
        return False


def _queue_deliveries(
    conn: sa.Connection,
    recent: list[dict[str, Any]],
    by_account: dict[int, list[_Endpoint]],
    *,
    now: datetime,
) -> int:
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
        for endpoint in by_account.get(row["account_id"], ())
        if endpoint.event_names
        and (ALL_EVENTS in endpoint.event_names or row["name"] in endpoint.event_names)
    ]
    if queued:
        conn.execute(sa.insert(deliveries), queued)
    return len(queued)
