"""The catalog's limits: distinct event names per account, property names per event
name. An event beyond them is refused in the dialect's shape (dropped in a Segment
batch) and kept in dropped events with the reason."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.support import UNLIMITED, Tenant
from tests.test_publishable_keys import publishable_key
from trackbook.services import Services
from trackbook.settings import Settings

NAMES = 5
PROPERTY_NAMES = 4


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        worker_in_process=False,
        catalog_max_event_names=NAMES,
        catalog_max_property_names=PROPERTY_NAMES,
        **UNLIMITED,
    )


def event(name: str, *properties: str, email: str = "flood@example.com") -> dict[str, object]:
    return {"event": name, "contact": {"email": email}, "properties": dict.fromkeys(properties, 1)}


async def dropped_of(client: httpx.AsyncClient, tenant: Tenant) -> list[dict]:
    found = await client.get("/v1/dropped-events", headers=tenant.headers)
    data: list[dict] = found.json()["data"]
    return data


async def catalog(client: httpx.AsyncClient, tenant: Tenant) -> list[str]:
    names = await client.get("/v1/event-names", headers=tenant.headers)
    return sorted(item["name"] for item in names.json()["data"])


async def test_a_new_event_name_beyond_the_limit_is_a_422_recorded_as_dropped(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for n in range(NAMES):
        stored = await client.post("/v1/track", headers=tenant.headers, json=event(f"name-{n}"))
        assert stored.status_code == 201, stored.text
    refused = await client.post("/v1/track", headers=tenant.headers, json=event("one-too-many"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == {
        "code": "catalog_full",
        "message": "event is new, and the account already has 5 event names: the most it may have",
        "field": "event",
    }
    known = await client.post("/v1/track", headers=tenant.headers, json=event("name-0"))
    assert known.status_code == 201, known.text
    assert await catalog(client, tenant) == [f"name-{n}" for n in range(NAMES)]
    [drop] = await dropped_of(client, tenant)
    assert drop["reason"] == "catalog_full"
    assert drop["source"] == "native"
    assert drop["payload"]["event"]["name"] == "one-too-many"
    assert drop["payload"]["error"].startswith("name is new, and the account already has 5")


async def test_segment_names_its_own_fields_when_the_catalog_is_full(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{tenant.key}:".encode()).decode()}

    def message(name: str, *properties: str) -> dict[str, object]:
        return {"userId": "u1", "event": name, "properties": dict.fromkeys(properties, 1)}

    for n in range(NAMES):
        stored = await client.post("/segment/v1/track", headers=auth, json=message(f"name-{n}"))
        assert stored.status_code == 200, stored.text
    refused = await client.post("/segment/v1/track", headers=auth, json=message("one-too-many"))
    assert refused.status_code == 400, refused.text
    assert refused.json() == {
        "code": "invalid_request",
        "message": "event is new, and the account already has 5 event names: the most it may have",
    }
    many = message("name-0", *(f"p{n}" for n in range(PROPERTY_NAMES + 1)))
    refused = await client.post("/segment/v1/track", headers=auth, json=many)
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"].startswith("properties would give the event name 'name-0'")


async def test_new_property_names_beyond_the_limit_refuse_their_event(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    first = await client.post(
        "/v1/track", headers=tenant.headers, json=event("signup", "a", "b", "c")
    )
    assert first.status_code == 201, first.text
    # one batch: the fourth name fits, the fifth does not; known names always do
    batch = [event("signup", "d"), event("signup", "e"), event("signup", "a", "d")]
    answer = await client.post("/v1/batch", headers=tenant.headers, json={"events": batch})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [result["status"] for result in results] == ["created", "error", "created"]
    assert results[1]["error"]["code"] == "catalog_full"
    assert results[1]["error"]["field"] == "events.1.properties"
    assert "more than 4 property names" in results[1]["error"]["message"]
    properties = await client.get("/v1/event-names/signup/properties", headers=tenant.headers)
    assert properties.json()["properties"] == ["a", "b", "c", "d"]
    [drop] = await dropped_of(client, tenant)
    assert drop["reason"] == "catalog_full"
    assert drop["payload"]["event"]["properties"] == {"e": 1}


async def test_a_flood_through_a_publishable_key_stores_the_first_names_and_drops_the_rest(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    key = await publishable_key(services, tenant.id)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    for round_ in range(2):
        flood = {
            "batch": [
                {
                    "type": "track",
                    "anonymousId": "flooder",
                    "event": f"flood-{round_}-{n}",
                    "messageId": f"flood-{round_}-{n}",
                }
                for n in range(8)
            ]
        }
        answer = await client.post("/segment/v1/batch", headers=auth, json=flood)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"success": True}
    assert await catalog(client, tenant) == [f"flood-0-{n}" for n in range(NAMES)]
    drops = await dropped_of(client, tenant)
    assert len(drops) == 16 - NAMES  # each once: the core records it, the dialect does not
    assert {drop["reason"] for drop in drops} == {"catalog_full"}
    assert {drop["source"] for drop in drops} == {"segment"}
    octeth = await client.post(
        "/api/v1/event",
        json={"APIKey": tenant.key, "Event": "octeth-new", "Email": "o@example.com"},
    )
    assert octeth.status_code == 422, octeth.text
    [error] = octeth.json()["Errors"]
    assert error["Code"] == 18
    assert error["Message"].startswith("name is new, and the account already has 5 event names")


async def test_an_octeth_event_refused_by_the_catalog_puts_no_held_contact_on_a_list(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    for n in range(NAMES):
        stored = await client.post("/v1/track", headers=tenant.headers, json=event(f"name-{n}"))
        assert stored.status_code == 201, stored.text
    newsletter = await client.post("/v1/lists", headers=tenant.headers, json={"name": "News"})
    list_id = newsletter.json()["id"]
    key = await publishable_key(services, tenant.id)
    refused = await client.post(
        "/api/v1/event",
        data={
            "APIKey": key,
            "Event": "one-too-many",
            "Email": "flood@example.com",
            "ListID": list_id,
        },
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["Errors"][0]["Code"] == 18
    members = await client.get(f"/v1/lists/{list_id}", headers=tenant.headers)
    assert members.json()["member_count"] == 0
    assert {drop["reason"] for drop in await dropped_of(client, tenant)} == {
        "catalog_full",
        "change_refused",
    }
