"""Segment's own Python library, segment-analytics-python from PyPI, unmodified, with
its host set to a Trackbook served over HTTP: what it sends lands on the timeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from segment import analytics

from tests.support import ManualClock, Tenant, make_tenant, served
from trackbook.app import create_app
from trackbook.clock import iso
from trackbook.services import Services
from trackbook.settings import Settings

# the library stamps calls with the real time, so the server keeps the real time too
HAPPENED = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


@dataclass
class Live:
    base_url: str
    services: Services
    tenant: Tenant


@pytest.fixture
async def live(settings: Settings, clock: ManualClock) -> AsyncIterator[Live]:
    app = create_app(settings, clock=clock)
    async with served(app) as base_url:
        services: Services = app.state.services
        yield Live(base_url, services, await make_tenant(services, "Lib"))


def library_client(live: Live, write_key: str, errors: list[Exception]) -> analytics.Client:
    return analytics.Client(
        write_key=write_key,
        host=f"{live.base_url}/segment",
        gzip=True,
        on_error=lambda error, _batch: errors.append(error),
        max_retries=1,
        upload_size=100,
    )


async def flush(client: analytics.Client) -> None:
    """Waits until the library has sent everything queued; its sending thread talks to
    the server running in this test's event loop, so the wait happens in a thread."""
    await asyncio.to_thread(client.flush)


async def timeline_of(live: Live, external_id: str) -> tuple[dict[str, Any], list[Any]]:
    async with httpx.AsyncClient(base_url=live.base_url, headers=live.tenant.headers) as api:
        found = await api.get("/v1/contacts", params={"limit": 1000})
        [contact] = [c for c in found.json()["data"] if c["external_id"] == external_id]
        events = await api.get(f"/v1/contacts/{contact['id']}/events", params={"limit": 1000})
        return contact, events.json()["data"]


async def test_track_identify_and_a_100_event_batch_land_on_the_timeline(live: Live) -> None:
    errors: list[Exception] = []
    client = library_client(live, live.tenant.key, errors)
    client.identify("lib-user", {"email": "Library@Example.com", "firstName": "Ada"})
    client.track(
        "lib-user",
        "Signed Up",
        {"plan": "pro", "seats": 3},
        timestamp=HAPPENED,
        message_id="lib-signup",
    )
    await flush(client)
    for index in range(100):
        client.track(
            "lib-user",
            "Viewed Item",
            {"sku": f"SKU-{index}", "position": index},
            timestamp=HAPPENED + timedelta(minutes=index + 1),
            message_id=f"lib-view-{index}",
        )
    # the same messageId again, as a retrying sender would: stored once
    client.track("lib-user", "Signed Up", {"plan": "pro"}, message_id="lib-signup")
    await asyncio.to_thread(client.shutdown)
    assert errors == []

    contact, events = await timeline_of(live, "lib-user")
    assert contact["email"] == "library@example.com"
    assert contact["first_name"] == "Ada"
    assert len(events) == 101
    signup = [e for e in events if e["event"] == "Signed Up"]
    assert len(signup) == 1
    assert signup[0]["properties"]["plan"] == "pro"
    assert signup[0]["properties"]["seats"] == 3
    assert signup[0]["properties"]["$context"]["library"]["name"] == "analytics-python"
    assert signup[0]["occurred_at"] == iso(HAPPENED)
    views = sorted(
        (e for e in events if e["event"] == "Viewed Item"),
        key=lambda event: int(event["properties"]["position"]),
    )
    assert [e["properties"]["sku"] for e in views] == [f"SKU-{i}" for i in range(100)]
    assert views[99]["occurred_at"] == iso(HAPPENED + timedelta(minutes=100))
    assert {e["message_id"] for e in views} == {f"lib-view-{i}" for i in range(100)}


async def test_page_screen_and_a_bad_key_through_the_library(live: Live) -> None:
    errors: list[Exception] = []
    client = library_client(live, live.tenant.key, errors)
    client.page("page-user", "Docs", "Install", {"url": "https://example.com/docs/install"})
    client.screen("page-user", "App", "Settings", {"tab": "keys"})
    client.group("page-user", "acme", {"plan": "team"})
    await asyncio.to_thread(client.shutdown)
    assert errors == []
    _, events = await timeline_of(live, "page-user")
    assert {e["event"]: e["title"] for e in events} == {
        "Page Viewed": "Install",
        "Screen Viewed": "Settings",
    }

    refused: list[Exception] = []
    wrong = library_client(live, "tb_live_not-a-key", refused)
    wrong.track("page-user", "Never Stored")
    await asyncio.to_thread(wrong.shutdown)
    [error] = refused
    assert isinstance(error, analytics.request.APIError)
    assert (error.status, error.code) == (401, "unauthorized")
