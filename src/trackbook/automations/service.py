"""Automations of an account: create, read, change, enable, delete; and their runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.automations.definition import Definition, parse
from trackbook.db.tables import automation_runs, automations, lists, segments, webhook_endpoints
from trackbook.delivery.personalise import check
from trackbook.errors import Conflict, Invalid, NotFound
from trackbook.segments.definition import regex_patterns
from trackbook.segments.service import check_patterns


class AutomationNotFound(NotFound):
    code = "automation_not_found"


@dataclass(frozen=True, slots=True)
class Automation:
    id: int
    name: str
    enabled: bool
    trigger_event: str
    conditions: dict[str, Any]
    frequency: str
    actions: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    automation_id: int
    event_id: int
    contact_id: int
    status: str
    step: int
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


def automation_from_row(row: sa.Row[Any]) -> Automation:
    return Automation(
        row.id,
        row.name,
        row.enabled,
        row.trigger_event,
        dict(row.conditions),
        row.frequency,
        list(row.actions),
        row.created_at,
        row.updated_at,
    )


def _name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise Invalid("name", "must be 1 to 200 characters")
    return name.strip()


async def _owned(
    conn: AsyncConnection, table: sa.Table, account_id: int, row_id: int, *, lock: bool = False
) -> bool:
    query = sa.select(table.c.id).where(table.c.account_id == account_id, table.c.id == row_id)
    if lock:
        query = query.with_for_update(read=True, key_share=True)
    return await conn.scalar(query) is not None


async def _check_patterns(conn: AsyncConnection, definition: Definition) -> None:
    for index, match in enumerate(definition.conditions.match):
        await check_patterns(conn, regex_patterns(match, f"conditions.match.{index}"))


async def _check_references(conn: AsyncConnection, account_id: int, definition: Definition) -> None:
    """Every id the automation names is one of this account's, checked when it is saved."""
    segment_id = definition.conditions.segment_id
    if segment_id is not None and not await _owned(conn, segments, account_id, segment_id):
        raise Invalid("conditions.segment_id", f"segment {segment_id} does not exist")
    for index, action in enumerate(definition.actions):
        path = f"actions.{index}"
        if "webhook_id" in action and not await _owned(
            conn, webhook_endpoints, account_id, action["webhook_id"]
        ):
            raise Invalid(f"{path}.webhook_id", f"webhook {action['webhook_id']} does not exist")
        # locked until this automation is saved: a list deleted meanwhile waits, then
        # finds it (contacts.delete_list refuses a list an automation uses)
        if "list_id" in action and not await _owned(
            conn, lists, account_id, action["list_id"], lock=True
        ):
            raise Invalid(f"{path}.list_id", f"list {action['list_id']} does not exist")
        if action["type"] == "email":
            for part in ("subject", "text", "html"):
                if action.get(part) is not None:
                    check(action[part], f"{path}.{part}")


async def _check_no_loop(
    conn: AsyncConnection, account_id: int, definition: Definition, automation_id: int | None
) -> None:
    """Refuses a `track` action that would, through this and the account's other
    automations, record the event that started it again: a loop without end."""
    rows = await conn.execute(
        sa.select(automations.c.id, automations.c.trigger_event, automations.c.actions).where(
            automations.c.account_id == account_id
        )
    )
    tracks: dict[str, set[str]] = {}
    for row in rows:
        if row.id == automation_id:
            continue
        for action in row.actions:
            if action.get("type") == "track":
                tracks.setdefault(row.trigger_event, set()).add(action["event"])
    for index, action in enumerate(definition.actions):
        if action["type"] != "track":
            continue
        path = [definition.trigger_event, action["event"]]
        seen = {action["event"]}
        frontier = [path]
        while frontier:
            chain = frontier.pop()
            for following in tracks.get(chain[-1], ()):
                if following == definition.trigger_event:
                    loop = " -> ".join([*chain, following])
                    raise Invalid(f"actions.{index}.event", f"would start a loop: {loop}")
                if following not in seen:
                    seen.add(following)
                    frontier.append([*chain, following])


async def _check_unique(
    conn: AsyncConnection, account_id: int, name: str, automation_id: int | None = None
) -> None:
    query = sa.select(automations.c.id).where(
        automations.c.account_id == account_id, automations.c.name == name
    )
    if automation_id is not None:
        query = query.where(automations.c.id != automation_id)
    if await conn.scalar(query) is not None:
        raise Conflict(f"an automation named {name!r} already exists")


async def create_automation(
    conn: AsyncConnection, account_id: int, body: dict[str, Any], *, now: datetime
) -> Automation:
    name = _name(body.get("name"))
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid("enabled", "must be true or false")
    definition = parse(body)
    await _check_patterns(conn, definition)
    await _check_references(conn, account_id, definition)
    await _check_no_loop(conn, account_id, definition, None)
    await _check_unique(conn, account_id, name)
    automation_id = await conn.scalar(
        sa.insert(automations)
        .values(
            account_id=account_id,
            name=name,
            enabled=enabled,
            trigger_event=definition.trigger_event,
            conditions=definition.raw_conditions,
            frequency=definition.frequency,
            actions=list(definition.actions),
            created_at=now,
            updated_at=now,
        )
        .returning(automations.c.id)
    )
    assert automation_id is not None  # noqa: S101 - RETURNING of an insert
    return await get_automation(conn, account_id, automation_id)


async def list_automations(conn: AsyncConnection, account_id: int) -> list[Automation]:
    rows = await conn.execute(
        sa.select(automations)
        .where(automations.c.account_id == account_id)
        .order_by(automations.c.id)
    )
    return [automation_from_row(row) for row in rows]


async def get_automation(conn: AsyncConnection, account_id: int, automation_id: int) -> Automation:
    row = (
        await conn.execute(
            sa.select(automations).where(
                automations.c.account_id == account_id, automations.c.id == automation_id
            )
        )
    ).one_or_none()
    if row is None:
        raise AutomationNotFound(f"automation {automation_id} does not exist")
    return automation_from_row(row)


async def update_automation(
    conn: AsyncConnection,
    account_id: int,
    automation_id: int,
    changes: dict[str, Any],
    *,
    now: datetime,
) -> Automation:
    """Changes the given fields; the result is checked as a whole, as on create. Runs
    already started go on with the actions as they are when each step runs."""
    current = await get_automation(conn, account_id, automation_id)
    merged: dict[str, Any] = {
        "name": current.name,
        "enabled": current.enabled,
        "trigger": {"event": current.trigger_event},
        "conditions": current.conditions,
        "frequency": current.frequency,
        "actions": current.actions,
    } | changes
    name = _name(merged["name"])
    if not isinstance(merged["enabled"], bool):
        raise Invalid("enabled", "must be true or false")
    # conditions left as they are may hold a pattern saved before the subset was enforced
    definition = parse(merged, stored_conditions="conditions" not in changes)
    if "conditions" in changes:
        await _check_patterns(conn, definition)
    await _check_references(conn, account_id, definition)
    await _check_no_loop(conn, account_id, definition, automation_id)
    await _check_unique(conn, account_id, name, automation_id)
    await conn.execute(
        automations.update()
        .where(automations.c.account_id == account_id, automations.c.id == automation_id)
        .values(
            name=name,
            enabled=merged["enabled"],
            trigger_event=definition.trigger_event,
            conditions=definition.raw_conditions,
            frequency=definition.frequency,
            actions=list(definition.actions),
            updated_at=now,
        )
    )
    return await get_automation(conn, account_id, automation_id)


async def delete_automation(conn: AsyncConnection, account_id: int, automation_id: int) -> None:
    """Deletes the automation with its runs; a run in progress stops at its next step."""
    await get_automation(conn, account_id, automation_id)
    await conn.execute(
        automations.delete().where(
            automations.c.account_id == account_id, automations.c.id == automation_id
        )
    )


def run_from_row(row: sa.Row[Any]) -> Run:
    return Run(
        row.id,
        row.automation_id,
        row.event_id,
        row.contact_id,
        row.status,
        row.step,
        row.attempts,
        row.last_error,
        row.next_attempt_at,
        row.created_at,
        row.updated_at,
        row.finished_at,
    )


async def list_runs(
    conn: AsyncConnection,
    account_id: int,
    automation_id: int,
    *,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Run]:
    """The automation's runs, newest first, `limit` of them older than `before_id`."""
    await get_automation(conn, account_id, automation_id)
    query = (
        sa.select(automation_runs)
        .where(
            automation_runs.c.account_id == account_id,
            automation_runs.c.automation_id == automation_id,
        )
        .order_by(automation_runs.c.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(automation_runs.c.status == status)
    if before_id is not None:
        query = query.where(automation_runs.c.id < before_id)
    return [run_from_row(row) for row in await conn.execute(query)]
