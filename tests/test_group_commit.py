"""Concurrent track() calls share transactions; each is answered after its commit."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager

from tests.support import ManualClock, Tenant, lock_waits_reach
from trackbook.accounts.service import get_account
from trackbook.app import create_app
from trackbook.contacts import service as contact_service
from trackbook.contacts.errors import NotAsNamed
from trackbook.contacts.identity import ContactRef, UnknownContact, VisitorNaming
from trackbook.db.engine import SerialWriter
from trackbook.db.tables import contacts, event_summaries, events
from trackbook.events import store
from trackbook.events.model import TrackCommand, TrackResult
from trackbook.events.store import write_group
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
        "/v1/identify",
        headers=tenant.headers,
        json={"anonymous_id": "visitor-1", "contact": {"email": "owner@example.com"}},
    )
    assert taken.status_code == 200
    good = [{"event": "ok", "contact": {"email": f"good{n}@example.com"}} for n in range(20)]
    # Unknown contact id: refused by the core inside the group.
    unknown = {"event": "bad", "contact": {"id": 99_999_999}}
    # A new contact with a visitor id another contact holds: the database refuses the
    # whole transaction, and the writer retries the group event by event.
    clash = {"event": "bad", "contact": {"email": "new@example.com", "anonymous_id": "visitor-1"}}
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


async def test_the_writers_look_ups_are_planned_for_each_groups_own_values(
    tenant: Tenant, services: Services, database_url: str
) -> None:
    """On PostgreSQL a prepared statement run five times with lists longer than the
    planner's guess goes over to a generic plan, made without its values; for the
    writer's look-ups by list one made while a table was small would read the
    account's rows for every group. pg_prepared_statements counts how each statement
    of the writer's connection was planned."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL plans")
    account = await services.db.query(get_account, tenant.id)
    writer = SerialWriter(services.db)
    try:
        for number in range(8):
            group = [
                services.events.prepare(
                    account,
                    TrackCommand(
                        name="visit",
                        contact=ContactRef(email=f"plan{number}-{index}@example.com"),
                        source="native",
                        unknown_contact=UnknownContact.CREATE_ALWAYS,
                        message_id=f"plan-{number}-{index}",
                    ),
                )
                for index in range(30)
            ]
            await writer.run(write_group, group, now=group[0].received_at)
        planned = await writer.run(
            lambda conn: conn.exec_driver_sql(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            ).all()
        )
    finally:
        await writer.release()
    plans = {statement: (generic, custom) for statement, generic, custom in planned}
    looked_up = (store._PG_KNOWN_KEYS, contact_service._FIND_POSTGRESQL["email"])
    assert [plans.get(statement) for statement in looked_up] == [(0, 8), (0, 8)], plans


async def test_an_event_stored_as_named_is_checked_in_its_group_and_refused_alone(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    """An event carrying an identify's naming is stored only when the visitor already is
    as named, checked in the group's own transaction; any other is refused on its own
    with NotAsNamed and nothing of it is stored."""
    known = await client.post(
        "/api/v1/event",
        json={
            "APIKey": tenant.key,
            "Event": "identify",
            "Email": "named@example.com",
            "ID": "ext-named",
            "UUID": "browser-1",
            "Properties": {"first_name": "Ada"},
        },
    )
    assert known.status_code == 200, known.text
    listed = await client.post("/v1/lists", headers=tenant.headers, json={"name": "Members"})
    list_id = listed.json()["id"]
    account = await services.auth.authenticate(tenant.key)

    def named(**naming: Any) -> TrackCommand:
        fields = {"email": "named@example.com", "external_id": None, **naming}
        return TrackCommand(
            name="seen",
            contact=ContactRef(email=fields["email"], external_id=fields["external_id"]),
            source="octeth",
            unknown_contact=UnknownContact.REJECT,
            as_named=VisitorNaming(**fields),
        )

    as_named = [
        named(),
        named(visitor_id="browser-1"),
        named(email=None, external_id="ext-named"),
        named(external_id="ext-named", fields=(("first_name", "Ada"),)),
    ]
    not_as_named = [
        named(email="nobody@example.com"),
        named(visitor_id="browser-2"),
        named(external_id="ext-other"),
        named(fields=(("first_name", "Bea"),)),
        named(list_id=list_id),
    ]
    groups_before = services.writer.groups_written
    outcomes = await services.events.track_many(account, [*as_named, *not_as_named])
    assert services.writer.groups_written - groups_before == 1
    stored, refused = outcomes[: len(as_named)], outcomes[len(as_named) :]
    assert [type(outcome) for outcome in refused] == [NotAsNamed] * len(not_as_named)
    assert all(isinstance(outcome, TrackResult) for outcome in stored), stored
    assert {outcome.visitor_id for outcome in stored if isinstance(outcome, TrackResult)} == {
        "browser-1"
    }
    async with services.db.read() as conn:
        seen = await conn.scalar(
            sa.select(sa.func.count()).where(
                events.c.account_id == tenant.id, events.c.name == "seen"
            )
        )
    assert seen == len(as_named)


async def test_octeth_events_of_known_and_changing_visitors_sent_at_once(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    """Known visitors' events share groups with visitors an identify has to change
    first; each request is answered as if it were alone."""

    def event(email: str, **fields: object) -> dict[str, object]:
        return {"APIKey": tenant.key, "Event": "page_view", "Email": email, **fields}

    known = [f"known{n}@example.com" for n in range(20)]
    first = [await client.post("/api/v1/event", json=event(email)) for email in known]
    visitors = [response.json()["uuid"] for response in first]
    bodies = [
        *(event(email) for email in known),
        *(event(f"new{n}@example.com") for n in range(10)),
        *(event(email, UUID=f"second-{n}") for n, email in enumerate(known[:10])),
    ]
    responses = await asyncio.gather(*(client.post("/api/v1/event", json=b) for b in bodies))
    assert {r.status_code for r in responses} == {200}, {r.text for r in responses}
    answers = [r.json() for r in responses]
    assert [a["uuid"] for a in answers[:20]] == visitors
    assert [a["identify_event_sent"] for a in answers[:20]] == [False] * 20
    assert [a["identify_event_sent"] for a in answers[20:30]] == [True] * 10
    assert [a["uuid"] for a in answers[30:]] == [f"second-{n}" for n in range(10)]
    assert [a["identify_event_sent"] for a in answers[30:]] == [True] * 10
    async with services.db.read() as conn:
        page_views = await conn.scalar(
            sa.select(sa.func.count()).where(
                events.c.account_id == tenant.id, events.c.name == "page_view"
            )
        )
        people = await conn.scalar(
            sa.select(sa.func.count()).where(contacts.c.account_id == tenant.id)
        )
    assert page_views == 20 + len(bodies)
    assert people == 30


async def test_a_group_holds_up_to_4000_events_on_sqlite_and_1000_on_postgresql(
    tenant: Tenant, services: Services, database_url: str
) -> None:
    """On SQLite a bigger group shares its commit and the index pages it writes among
    more events; on PostgreSQL the one statement of a group would keep the next one
    waiting longer."""
    account = await services.db.query(get_account, tenant.id)
    commands = _opens(2500, contacts=100)
    # the contacts first, so that no group clashes with another creating them
    await services.events.track_many(account, commands[:100])
    groups_before = services.writer.groups_written
    outcomes = await services.events.track_many(account, commands)
    assert all(isinstance(outcome, TrackResult) for outcome in outcomes)
    groups = services.writer.groups_written - groups_before
    assert groups == (1 if database_url.startswith("sqlite") else 3)


async def test_events_of_calls_made_at_once_fill_a_group_without_going_over_its_size(
    tenant: Tenant, services: Services, database_url: str
) -> None:
    """Four calls of 600 events at once: on SQLite one group of 2400; on PostgreSQL,
    where a group holds 1000, a call that would overfill a group waits for the next,
    whichever of the two writers forms it."""
    account = await services.db.query(get_account, tenant.id)
    commands = _opens(2400, contacts=100)
    await services.events.track_many(account, commands[:100])
    groups_before = services.writer.groups_written
    # a deadline, not a timing: a call whose events no group takes is never answered
    calls = await asyncio.wait_for(
        asyncio.gather(
            *(
                services.events.track_many(account, commands[n : n + 600])
                for n in range(0, 2400, 600)
            )
        ),
        timeout=60,
    )
    assert all(isinstance(outcome, TrackResult) for outcomes in calls for outcome in outcomes)
    groups = services.writer.groups_written - groups_before
    assert groups == (1 if database_url.startswith("sqlite") else 4)


async def test_groups_creating_the_same_new_contacts_at_once_are_written_again_whole(
    tenant: Tenant, services: Services, database_url: str
) -> None:
    """On PostgreSQL two groups are written at once; both create the same 100 new
    contacts, and the one that clashes is written again as a group once the other has
    committed, not one event at a time."""
    account = await services.db.query(get_account, tenant.id)
    groups_before = services.writer.groups_written
    outcomes = await services.events.track_many(account, _opens(2500, contacts=100))
    assert all(isinstance(outcome, TrackResult) for outcome in outcomes)
    assert (
        len({outcome.contact_id for outcome in outcomes if isinstance(outcome, TrackResult)}) == 100
    )
    # SQLite: one group; PostgreSQL: three groups and the one written again
    assert services.writer.groups_written - groups_before <= 5
    async with services.db.read() as conn:
        counters = (
            await conn.execute(
                sa.select(event_summaries.c.counter).where(
                    event_summaries.c.account_id == tenant.id
                )
            )
        ).all()
    assert sorted(row.counter for row in counters) == [25] * 100


def _opens(count: int, *, contacts: int) -> list[TrackCommand]:
    return [
        TrackCommand(
            name="open",
            contact=ContactRef(email=f"g{n % contacts}@example.com"),
            source="native",
            unknown_contact=UnknownContact.CREATE_ALWAYS,
        )
        for n in range(count)
    ]


async def test_a_message_id_another_node_is_storing_answers_with_that_nodes_event(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, database_url: str
) -> None:
    """Another node's transaction holds the same message id, not yet committed: this
    node's group cannot see it, so its write waits on the key, then fails when the
    other commits, and the event written again alone is the other node's duplicate."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: the other's lock comes before the look-up")
    known = await client.post(
        "/v1/contacts", headers=tenant.headers, json={"email": "race@example.com"}
    )
    assert known.status_code == 201  # so that only the message id can clash
    account = await services.db.query(get_account, tenant.id)
    command = TrackCommand(
        name="order",
        contact=ContactRef(email="race@example.com"),
        source="native",
        unknown_contact=UnknownContact.CREATE_ALWAYS,
        message_id="order-77",
    )
    pending = services.events.prepare(account, command)
    async with services.db.transaction() as other_node:
        [stored], _ = await other_node.run_sync(write_group, [pending], now=pending.received_at)
        assert isinstance(stored, TrackResult)
        tracked = asyncio.create_task(
            client.post(
                "/v1/track",
                headers=tenant.headers,
                json={
                    "event": "order",
                    "contact": {"email": "race@example.com"},
                    "message_id": "order-77",
                },
            )
        )
        assert await lock_waits_reach(services, 1), (
            "the node's write did not wait on the other's message id"
        )
    response = await tracked
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["duplicate"]) == (stored.event_id, True)
    async with services.db.read() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).where(events.c.account_id == tenant.id)
        )
    assert count == 1


async def test_on_postgresql_a_group_waiting_on_a_lock_does_not_hold_up_the_next(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, database_url: str
) -> None:
    """Two groups are written at once on PostgreSQL: while one waits for a counter that
    another transaction holds, an event for another contact is committed and answered."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time")
    held = {"event": "open", "contact": {"email": "held@example.com"}}
    assert (await client.post("/v1/track", headers=tenant.headers, json=held)).status_code == 201
    async with services.db.transaction() as other:
        await other.execute(
            sa.select(event_summaries.c.id)
            .where(event_summaries.c.account_id == tenant.id)
            .with_for_update()
        )
        waiting = asyncio.create_task(client.post("/v1/track", headers=tenant.headers, json=held))
        assert await lock_waits_reach(services, 1), "the first group did not wait on the counter"
        free = {"event": "open", "contact": {"email": "free@example.com"}}
        # a deadline for liveness, not a timing: one writer would wait here until the
        # transaction above ends, which it does only after this answer
        answered = await asyncio.wait_for(
            client.post("/v1/track", headers=tenant.headers, json=free), timeout=30
        )
        assert answered.status_code == 201, answered.text
        assert not waiting.done()
    assert (await waiting).status_code == 201
    async with services.db.read() as conn:
        counters = (
            await conn.execute(
                sa.select(event_summaries.c.counter)
                .where(event_summaries.c.account_id == tenant.id)
                .order_by(event_summaries.c.id)
            )
        ).all()
    assert [row.counter for row in counters] == [2, 1]
