"""What one incoming event may make automations record: a budget of events and a
depth of `track` steps, held across workers; the steps beyond fail, saying why."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import httpx
import pytest

from tests.automations.conftest import drain
from tests.automations.test_end_to_end import create_automation
from tests.support import UNLIMITED, ManualClock, Tenant
from trackbook.services import Services
from trackbook.settings import Settings

BUDGET = 12


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        worker_in_process=False,
        automation_max_derived_events=BUDGET,
        **UNLIMITED,
    )


async def events_of(client: httpx.AsyncClient, tenant: Tenant, contact_id: int) -> list[dict]:
    response = await client.get(
        f"/v1/contacts/{contact_id}/events", params={"limit": 1000}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    found: list[dict] = response.json()["data"]
    return found


async def runs(client: httpx.AsyncClient, tenant: Tenant, automation_ids: list[int]) -> list[dict]:
    found: list[dict] = []
    for automation_id in automation_ids:
        response = await client.get(f"/v1/automations/{automation_id}/runs", headers=tenant.headers)
        found += response.json()["data"]
    return found


async def track(client: httpx.AsyncClient, tenant: Tenant, event: str, email: str) -> int:
    response = await client.post(
        "/v1/track", headers=tenant.headers, json={"event": event, "contact": {"email": email}}
    )
    assert response.status_code == 201, response.text
    contact_id: int = response.json()["contact_id"]
    return contact_id


async def test_one_event_derives_at_most_the_budget_across_two_workers(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings, clock: ManualClock
) -> None:
    # three automations of five `track` steps: 15 events from one signup, over 12
    automation_ids = [
        await create_automation(
            client,
            tenant,
            name=f"Fan {letter}",
            trigger={"event": "signup"},
            actions=[{"type": "track", "event": f"{letter}{n}"} for n in range(5)],
        )
        for letter in "abc"
    ]
    first = await track(client, tenant, "signup", "first@example.com")
    second = await track(client, tenant, "signup", "second@example.com")
    workers = [Services.build(settings, clock) for _ in range(2)]
    for services in workers:
        await services.start()

    async def work(services: Services) -> None:
        while await services.worker.run_once():
            pass

    try:
        await asyncio.gather(*(work(services) for services in workers))
    finally:
        for services in workers:
            await services.stop()

    for contact_id in (first, second):  # each incoming event has a budget of its own
        derived = [e for e in await events_of(client, tenant, contact_id) if e["event"] != "signup"]
        assert len(derived) == BUDGET
        assert {e["source"] for e in derived} == {"automation"}
    finished = await runs(client, tenant, automation_ids)
    assert len(finished) == 6
    # each run ends done or, at its first step beyond the budget, failed
    assert {run["status"] for run in finished} <= {"done", "failed"}
    failed = [run for run in finished if run["status"] == "failed"]
    assert failed
    for run in failed:
        assert "already led automations to record 12 events" in run["error"]
        assert "TRACKBOOK_AUTOMATION_MAX_DERIVED_EVENTS" in run["error"]


async def test_a_chain_of_track_steps_stops_at_the_depth_limit(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    chain = ["signup", "first", "second", "third", "fourth"]
    automation_ids = [
        await create_automation(
            client,
            tenant,
            name=f"After {event}",
            trigger={"event": event},
            actions=[{"type": "track", "event": following}, {"type": "add_tag", "tag": event}],
        )
        for event, following in pairwise(chain)
    ]
    signup = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "signup", "contact": {"email": "chain@example.com"}},
    )
    contact_id, signup_id = signup.json()["contact_id"], signup.json()["id"]
    await drain(services)

    stored = [e["event"] for e in await events_of(client, tenant, contact_id)]
    assert sorted(stored) == sorted(["signup", "first", "second", "third"])
    statuses = [(run["status"], run["error"]) for run in await runs(client, tenant, automation_ids)]
    assert statuses[:3] == [("done", None)] * 3
    status, error = statuses[3]
    assert status == "failed"
    assert error == (
        f"the event would be 4 automation steps from event {signup_id}, which started the "
        "chain; the most is 3 (TRACKBOOK_AUTOMATION_MAX_DEPTH)"
    )
