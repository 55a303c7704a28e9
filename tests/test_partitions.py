"""events on PostgreSQL: a partition a month, a default one for the rest."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from tests.support import ManualClock, Tenant
from trackbook.db.partitions import ensure_partitions
from trackbook.services import Services


async def partition_of(services: Services, event_id: int) -> str:
    async with services.db.read() as conn:
        found = await conn.scalar(
            sa.text("SELECT tableoid::regclass::text FROM events WHERE id = :id"), {"id": event_id}
        )
    return str(found)


async def test_events_land_in_their_month_and_old_backfills_in_the_default(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, clock: ManualClock
) -> None:
    if services.db.writer.dialect.name != "postgresql":
        pytest.skip("SQLite keeps events in one table")
    now = clock.now()
    recent = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "signup", "contact": {"email": "p@example.com"}, "message_id": "p-1"},
    )
    ancient = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={
            "event": "signup",
            "contact": {"email": "p@example.com"},
            "timestamp": "2019-03-04T05:06:07Z",
            "message_id": "p-2",
        },
    )
    assert await partition_of(services, recent.json()["id"]) == (
        f"events_y{now.year}m{now.month:02d}"
    )
    assert await partition_of(services, ancient.json()["id"]) == "events_default"

    async with services.db.transaction() as conn:
        created = await conn.run_sync(ensure_partitions, now, since=date(2019, 3, 1))
    assert created >= 1
    assert await partition_of(services, ancient.json()["id"]) == "events_y2019m03"
    replay = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={
            "event": "signup",
            "contact": {"email": "p@example.com"},
            "timestamp": "2019-03-04T05:06:07Z",
            "message_id": "p-2",
        },
    )
    assert (replay.status_code, replay.json()["id"]) == (200, ancient.json()["id"])

    later = datetime.now(UTC) + timedelta(days=200)
    async with services.db.transaction() as conn:
        await conn.run_sync(ensure_partitions, later)
        again = await conn.run_sync(ensure_partitions, later)
    assert again == 0
    ahead = later.replace(day=1) + timedelta(days=95)
    async with services.db.read() as conn:
        names = set(
            await conn.scalars(
                sa.text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
                )
            )
        )
    assert f"events_y{ahead.year}m{ahead.month:02d}" in names
