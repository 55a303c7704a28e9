"""No id is given twice: after the newest row is deleted, the next one gets a new id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.support import Tenant
from trackbook.accounts import service as accounts
from trackbook.db import tables
from trackbook.db.engine import Database
from trackbook.db.migrate import alembic_config
from trackbook.services import Services

CONTACT_IS_SUBSCRIBED = {"contact": {"field": "status", "op": "equals", "value": "subscribed"}}
# the path that creates one, and the body of the n-th
RESOURCES: dict[str, tuple[str, Callable[[int], dict[str, Any]]]] = {
    "contacts": ("/v1/contacts", lambda n: {"email": f"number{n}@example.com"}),
    "lists": ("/v1/lists", lambda n: {"name": f"List {n}"}),
    "segments": (
        "/v1/segments",
        lambda n: {"name": f"Segment {n}", "definition": CONTACT_IS_SUBSCRIBED},
    ),
    "automations": (
        "/v1/automations",
        lambda n: {
            "name": f"Automation {n}",
            "trigger": {"event": "signup"},
            "actions": [{"type": "add_tag", "tag": "new"}],
        },
    ),
    "webhooks": ("/v1/webhooks", lambda n: {"url": f"https://example.com/hook/{n}"}),
}


@pytest.mark.parametrize("resource", list(RESOURCES))
async def test_the_id_of_the_newest_deleted_is_not_given_again(
    client: httpx.AsyncClient, tenant: Tenant, resource: str
) -> None:
    path, body = RESOURCES[resource]

    async def create(n: int) -> int:
        created = await client.post(path, headers=tenant.headers, json=body(n))
        assert created.status_code == 201, created.text
        return int(created.json()["id"])

    first, newest = await create(1), await create(2)
    assert newest > first
    deleted = await client.delete(f"{path}/{newest}", headers=tenant.headers)
    assert deleted.status_code == 204, deleted.text
    assert await create(3) > newest


async def _track(client: httpx.AsyncClient, tenant: Tenant, email: str, event: str) -> int:
    tracked = await client.post(
        "/v1/track", headers=tenant.headers, json={"contact": {"email": email}, "event": event}
    )
    assert tracked.status_code == 201, tracked.text
    return int(tracked.json()["id"])


async def _counter_ids(client: httpx.AsyncClient, tenant: Tenant, contact_id: int) -> list[int]:
    found = await client.get(f"/v1/contacts/{contact_id}/counters", headers=tenant.headers)
    return [counter["id"] for counter in found.json()["data"]]


async def test_events_and_counters_of_an_erased_contact_keep_their_ids(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Events and their counters go with their contact, the only way they are deleted."""
    kept = await client.post("/v1/contacts", headers=tenant.headers, json={"email": "k@x.io"})
    erased = await client.post("/v1/contacts", headers=tenant.headers, json={"email": "e@x.io"})
    await _track(client, tenant, "k@x.io", "signup")
    newest_event = await _track(client, tenant, "e@x.io", "signup")
    [newest_counter] = await _counter_ids(client, tenant, erased.json()["id"])

    gone = await client.delete(f"/v1/contacts/{erased.json()['id']}", headers=tenant.headers)
    assert gone.status_code == 204

    assert await _track(client, tenant, "k@x.io", "upgrade") > newest_event
    counters = await _counter_ids(client, tenant, kept.json()["id"])
    assert len(counters) == 2
    assert max(counters) > newest_counter


async def test_dropped_events_named_by_an_erased_contact_keep_their_ids(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    account = await services.db.query(accounts.get_account, tenant.id)
    site = {"actid": account.actid, "key": services.keyring.open(account.sealed_event_key)}

    async def drop(email: str) -> None:
        # ActiveCampaign acknowledges an event of an unknown contact and stores it dropped
        sent = await client.post("/event", data={**site, "event": "x", "visit[email]": email})
        assert sent.status_code == 200, sent.text

    async def dropped_ids() -> list[int]:
        found = await client.get("/v1/dropped-events", headers=tenant.headers)
        return [item["id"] for item in found.json()["data"]]

    await drop("first@x.io")
    await drop("newest@x.io")
    newest = max(await dropped_ids())
    contact = await client.post(
        "/v1/contacts", headers=tenant.headers, json={"email": "newest@x.io"}
    )
    erased = await client.delete(f"/v1/contacts/{contact.json()['id']}", headers=tenant.headers)
    assert erased.status_code == 204
    assert max(await dropped_ids()) < newest
    await drop("third@x.io")
    assert max(await dropped_ids()) > newest


MIGRATED_AT = datetime(2026, 12, 1, tzinfo=UTC)


def _row(table: sa.Table, n: int) -> dict[str, Any]:
    """The n-th row of a table migration 0012 rebuilds (or of list_members), referring to
    the n-th row of each table it refers to."""
    at = MIGRATED_AT
    values: dict[str, dict[str, Any]] = {
        "contacts": {"email": f"{n}@x.io", "created_at": at, "updated_at": at},
        "lists": {"name": f"List {n}", "created_at": at},
        "segments": {"name": f"Segment {n}", "definition": {}, "created_at": at, "updated_at": at},
        "automations": {
            "name": f"Automation {n}", "trigger_event": "x", "conditions": {}, "frequency": "once",
            "actions": [], "created_at": at, "updated_at": at,
        },
        "webhook_endpoints": {
            "url": "https://example.com", "secret": "s", "created_at": at, "updated_at": at
        },
        "dropped_events": {"source": "x", "reason": "x", "payload": {}, "received_at": at},
        "events": {
            "contact_id": n, "name": "x", "source": "x", "list_id": n, "occurred_at": at,
            "received_at": at,
        },
        "event_summaries": {
            "contact_id": n, "name": f"Event {n}", "title": "", "counter": 1, "provider": "x",
            "created_at": at, "updated_at": at,
        },
        "automation_runs": {
            "automation_id": n, "event_id": n, "contact_id": n, "status": "x",
            "next_attempt_at": at, "created_at": at, "updated_at": at,
        },
        "deliveries": {
            "endpoint_id": n, "webhook_id": f"msg_{n}", "run_id": n, "status": "x",
            "next_attempt_at": at, "created_at": at,
        },
        "list_members": {"list_id": n, "contact_id": n, "created_at": at},
    }  # fmt: skip
    return {"account_id": 1, **values[table.name]}


REBUILT = [
    tables.contacts, tables.lists, tables.segments, tables.automations,
    tables.webhook_endpoints, tables.dropped_events, tables.events, tables.event_summaries,
    tables.automation_runs, tables.deliveries,
]  # fmt: skip


async def _fill_at_0011(conn: AsyncConnection) -> None:
    """Two rows in each rebuilt table, with their ids, as a database at 0011 holds them."""
    await conn.execute(
        tables.accounts.insert().values(
            id=1, name="Acme", created_at=MIGRATED_AT, actid="1", event_key="k"
        )
    )
    for table in REBUILT:
        await conn.execute(table.insert(), [{"id": n, **_row(table, n)} for n in (1, 2)])
        if conn.dialect.name == "postgresql":
            # rows written with their ids leave the sequence behind; the server's would not
            await conn.execute(
                sa.text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), 2)")
            )
    await conn.execute(tables.list_members.insert(), [_row(tables.list_members, n) for n in (1, 2)])


async def _foreign_keys(conn: AsyncConnection) -> dict[str, list[Any]]:
    if conn.dialect.name != "sqlite":
        return {}
    found = {}
    for table in tables.metadata.sorted_tables:
        listed = await conn.execute(sa.text(f"PRAGMA foreign_key_list({table.name})"))
        # (referred table, column, referred column, on update, on delete, match)
        found[table.name] = sorted(tuple(row)[2:] for row in listed)
    return found


async def test_the_upgrade_keeps_rows_ids_and_keys_and_gives_no_id_twice(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    await asyncio.to_thread(command.upgrade, config, "0011")
    db = Database(empty_database_url)
    try:
        async with db.transaction() as conn:
            await _fill_at_0011(conn)
            keys_before = await _foreign_keys(conn)
        # 0012 is the rebuild; later migrations add columns these rows do not fill, and
        # tests/test_schema.py holds the head's AUTOINCREMENT tables to the declared ones
        await asyncio.to_thread(command.upgrade, config, "0012")

        async with db.transaction() as conn:
            for table in REBUILT:
                ids = await conn.scalars(sa.select(table.c.id).order_by(table.c.id))
                assert ids.all() == [1, 2], table.name
            assert await _foreign_keys(conn) == keys_before
            if conn.dialect.name == "sqlite":
                assert (await conn.execute(sa.text("PRAGMA foreign_key_check"))).all() == []
                autoincrement = await conn.scalars(
                    sa.text("SELECT name FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'")
                )
                assert set(autoincrement) == {table.name for table in REBUILT}

        async with db.transaction() as conn:
            await conn.execute(
                tables.list_members.delete().where(tables.list_members.c.list_id == 2)
            )
            for table in reversed(REBUILT):
                await conn.execute(table.delete().where(table.c.id == 2))
            for table in REBUILT:
                # the new rows refer to the first ones, the rows still there
                new_id = await conn.scalar(
                    table.insert().values(_row(table, 1) | _unique(table)).returning(table.c.id)
                )
                assert new_id == 3, table.name

        async with db.transaction() as conn:
            # the keys still act: erasing the first contact takes its events and memberships
            await conn.execute(tables.contacts.delete().where(tables.contacts.c.id == 1))
            for table in (tables.events, tables.list_members):
                assert await conn.scalar(sa.select(sa.func.count()).select_from(table)) == 0
    finally:
        await db.dispose()


def _unique(table: sa.Table) -> dict[str, Any]:
    """Values of the third row where the first one's would clash with a unique key."""
    third = _row(table, 3)
    return {
        column: third[column] for column in ("email", "name", "webhook_id") if column in third
    } | ({"event_id": 3} if table.name == "automation_runs" else {})
