"""Concurrent track() calls share transactions; each is answered after its commit."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager

from tests.support import ManualClock, Tenant
from trackbook.app import create_app
from trackbook.db.engine import Database, SerialWriter
from trackbook.db.tables import contacts, event_summaries, events
from trackbook.services import Services
from trackbook.settings import Settings


async def test_200_concurrent_tracks_of_one_counter_give_200_rows_and_counter_200(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    groups_before = services.writer.groups_written
    body = {"event": "page_view", "title": "Pricing", "contact": {"email": "race@example.com"}}
    responses = await asyncio.gather(
        *(client.post("/v1/track", headers=tenant.headers, json=body) for _ in range(200))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 200
    async with services.db.read() as conn:
        stored = await conn.scalar(
            sa.select(sa.func.count()).where(events.c.account_id == tenant.id)
        )
        counters = (
            await conn.execute(
                sa.select(event_summaries.c.counter).where(
                    event_summaries.c.account_id == tenant.id
                )
            )
        ).all()
        people = await conn.scalar(
            sa.select(sa.func.count()).where(contacts.c.account_id == tenant.id)
        )
    assert stored == 200
    assert [row.counter for row in counters] == [200]
    assert people == 1
    # the events were written in shared transactions, not one per request
    assert services.writer.groups_written - groups_before < 200


async def test_two_app_instances_on_one_database_count_200_concurrent_tracks_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    settings: Settings,
    clock: ManualClock,
) -> None:
    """Two API nodes, each with its own writer, racing on one counter: the upsert,
    not the in-process writer, has to keep the count."""
    second = create_app(settings, clock=clock)
    async with LifespanManager(second):
        second_services: Services = second.state.services
        assert second_services.writer is not services.writer
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://node-2.test") as other:
            body = {
                "event": "page_view",
                "title": "Pricing",
                "contact": {"email": "two-nodes@example.com"},
            }
            nodes = [client, other]
            responses = await asyncio.gather(
                *(
                    nodes[n % 2].post("/v1/track", headers=tenant.headers, json=body)
                    for n in range(200)
                )
            )
        groups_on_second = second_services.writer.groups_written
    assert [r.status_code for r in responses] == [201] * 200, {r.text for r in responses}
    assert len({r.json()["id"] for r in responses}) == 200
    assert groups_on_second > 0
    async with services.db.read() as conn:
        stored = await conn.scalar(
            sa.select(sa.func.count()).where(events.c.account_id == tenant.id)
        )
        counters = (
            await conn.execute(
                sa.select(event_summaries.c.counter).where(
                    event_summaries.c.account_id == tenant.id
                )
            )
        ).all()
        people = await conn.scalar(
            sa.select(sa.func.count()).where(contacts.c.account_id == tenant.id)
        )
    assert stored == 200
    assert [row.counter for row in counters] == [200]
    assert people == 1


async def test_a_bad_event_in_a_group_fails_alone(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    taken = await client.post(
        "/v1/contacts",
        headers=tenant.headers,
        json={"email": "owner@example.com", "external_id": "ext-1"},
    )
    assert taken.status_code == 201
    good = [{"event": "ok", "contact": {"email": f"good{n}@example.com"}} for n in range(20)]
    # Unknown contact id: refused by the core inside the group.
    unknown = {"event": "bad", "contact": {"id": 99_999_999}}
    # A new contact whose external id another contact holds: the database refuses the
    # whole transaction, and the writer retries the group event by event.
    clash = {"event": "bad", "contact": {"email": "new@example.com", "external_id": "ext-1"}}
    bodies = [*good[:10], unknown, clash, *good[10:]]
    responses = await asyncio.gather(
        *(client.post("/v1/track", headers=tenant.headers, json=b) for b in bodies)
    )
    statuses = [r.status_code for r in responses]
    assert statuses == [201] * 10 + [404, 409] + [201] * 10
    async with services.db.read() as conn:
        names = (
            await conn.scalars(sa.select(events.c.name).where(events.c.account_id == tenant.id))
        ).all()
    assert sorted(names) == ["ok"] * 20


async def test_only_the_event_writer_plans_every_statement_with_its_values(
    database_url: str,
) -> None:
    """On PostgreSQL the writer's look-ups by list need a plan made for their values,
    while the planning of every other statement (the timeline over the month
    partitions) would cost more than running it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL setting")
    db = Database(database_url)
    try:
        async with db.read() as connection:
            shared = await connection.scalar(sa.text("SHOW plan_cache_mode"))
        writer = SerialWriter(db)
        mode = await writer.run(
            lambda conn: conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one()
        )
        await writer.release()
    finally:
        await db.dispose()
    assert (shared, mode) == ("auto", "force_custom_plan")
