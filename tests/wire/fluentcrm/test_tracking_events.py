"""GET tracking-events: the seed's listing shape, paging and time zones."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.support import ManualClock, Tenant
from tests.wire.fluentcrm.conftest import BASE, Subscribe, basic

SEED = json.loads((Path(__file__).parent / "seed_tracking_events.json").read_text())
WP_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


async def _track(
    client: httpx.AsyncClient, tenant: Tenant, email: str, key: str, **extra: object
) -> None:
    response = await client.post(
        f"{BASE}/subscribers/track-event",
        auth=basic(tenant),
        json={"email": email, "event_key": key, "title": key.title(), **extra},
    )
    assert response.status_code == 200, response.text


async def test_listing_matches_the_seed_field_by_field(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("seed@example.com")
    await _track(client, tenant, "seed@example.com", "testing_from_rest_API", value="Hello There")
    await _track(client, tenant, "seed@example.com", "fcrm_event_tested", provider="woocommerce")
    response = await client.get(
        f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
    )
    assert response.status_code == 200
    events = response.json()["events"]
    expected = SEED["events"]
    assert list(events) == list(expected)
    assert {k: events[k] for k in expected if k != "data"} | {"total": 3, "to": 3} == {
        k: v for k, v in expected.items() if k != "data"
    }
    assert events["total"] == 2
    for item, seed_item in zip(events["data"], expected["data"], strict=True):
        assert list(item) == list(seed_item)
        for field, seed_value in seed_item.items():
            assert type(item[field]) is type(seed_value), field
        assert item["subscriber_id"] == str(contact_id)
        assert WP_TIME.match(item["created_at"])
        assert WP_TIME.match(item["updated_at"])
    assert [item["id"] for item in events["data"]] == sorted(
        (item["id"] for item in events["data"]), reverse=True
    )


async def test_pages_link_to_each_other(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("pages@example.com")
    for n in range(5):
        await _track(client, tenant, "pages@example.com", f"event_{n}")
    url = f"{BASE}/subscribers/{contact_id}/tracking-events"
    first = (await client.get(url, auth=basic(tenant), params={"per_page": 2, "page": 1})).json()
    page = first["events"]
    assert (page["total"], page["last_page"], page["from"], page["to"]) == (5, 3, 1, 2)
    assert page["prev_page_url"] is None
    assert page["next_page_url"] == f"{url}?page=2"
    # the link carries only `page`, as FluentCRM's does (capture 24)
    second = (await client.get(page["next_page_url"] + "&per_page=2", auth=basic(tenant))).json()[
        "events"
    ]
    assert second["current_page"] == 2
    assert second["prev_page_url"] == f"{url}?page=1"
    assert [d["event_key"] for d in page["data"] + second["data"]] == [
        "event_4",
        "event_3",
        "event_2",
        "event_1",
    ]
    beyond = (await client.get(url, auth=basic(tenant), params={"page": 9})).json()["events"]
    assert (beyond["data"], beyond["from"], beyond["to"]) == ([], None, None)


async def test_times_are_in_the_accounts_time_zone(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe, clock: ManualClock
) -> None:
    contact_id = await subscribe("tz@example.com")
    clock.set(datetime(2026, 7, 1, 10, 0, 0, tzinfo=UTC))
    await _track(client, tenant, "tz@example.com", "login")
    url = f"{BASE}/subscribers/{contact_id}/tracking-events"
    utc = (await client.get(url, auth=basic(tenant))).json()["events"]["data"][0]
    await client.patch("/v1/account", headers=tenant.headers, json={"timezone": "Europe/Berlin"})
    berlin = (await client.get(url, auth=basic(tenant))).json()["events"]["data"][0]
    assert utc["created_at"] == "2026-07-01 10:00:00"
    assert berlin["created_at"] == "2026-07-01 12:00:00"


async def test_unknown_or_foreign_subscriber_is_404(
    client: httpx.AsyncClient, tenant: Tenant, new_tenant: object, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("mine@example.com")
    other = await new_tenant("Other")  # type: ignore[operator]
    not_found = {"message": "No query results for model [FluentCrm\\App\\Models\\Subscriber]."}
    for who, subscriber in ((tenant, 999999999), (other, contact_id)):
        response = await client.get(
            f"{BASE}/subscribers/{subscriber}/tracking-events", auth=basic(who)
        )
        assert (response.status_code, response.json()) == (404, not_found)
    foreign_track = await client.post(
        f"{BASE}/subscribers/track-event",
        auth=basic(other),
        json={"subscriber_id": contact_id, "event_key": "k", "title": "t"},
    )
    assert foreign_track.json()["error_code"] == "subscriber_not_found"
