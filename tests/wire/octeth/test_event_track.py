"""Octeth's event.track and website_events.properties, replayed from the seed."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import TenantFactory
from tests.support import Tenant, nested_json
from trackbook.db.tables import contact_aliases, contacts, event_names, events
from trackbook.services import Services

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
async def list_id(client: httpx.AsyncClient, tenant: Tenant) -> int:
    created = await client.post("/v1/lists", headers=tenant.headers, json={"name": "Newsletter"})
    list_id: int = created.json()["id"]
    return list_id


def seed_request(tenant: Tenant, list_id: int) -> dict[str, object]:
    return {
        "Command": "event.track",
        "APIKey": tenant.key,
        "Event": "page_view",
        "ListID": list_id,
        "Email": "subscriber@example.com",
        "ID": "user-12345",
        "Properties": {
            "$page_title": "Product Page",
            "$current_url": "https://example.com/products/item-1",
            "product_id": "item-1",
            "product_name": "Example Product",
        },
    }


async def test_seed_example_request_and_success_response(
    client: httpx.AsyncClient, tenant: Tenant, list_id: int
) -> None:
    response = await client.post("/api/v1/event", json=seed_request(tenant, list_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["status", "uuid", "external_id", "identify_event_sent"]
    assert body["status"] == "success"
    assert UUID.match(body["uuid"])
    assert body["external_id"] == "user-12345"
    assert body["identify_event_sent"] is True

    found = await client.get(
        "/v1/contacts", headers=tenant.headers, params={"email": "subscriber@example.com"}
    )
    [contact] = found.json()["data"]
    assert contact["external_id"] == "user-12345"
    details = (await client.get(f"/v1/contacts/{contact['id']}", headers=tenant.headers)).json()
    assert details["list_ids"] == [list_id]
    assert details["aliases"] == [body["uuid"]]
    timeline = await client.get(f"/v1/contacts/{contact['id']}/events", headers=tenant.headers)
    page_view = next(e for e in timeline.json()["data"] if e["event"] == "page_view")
    assert page_view["properties"]["$page_title"] == "Product Page"
    assert page_view["source"] == "octeth"

    again = await client.post("/api/v1/event", json=seed_request(tenant, list_id))
    assert again.json()["uuid"] == body["uuid"]
    assert again.json()["identify_event_sent"] is False


async def test_seed_error_response_and_every_error_code(
    client: httpx.AsyncClient, tenant: Tenant, list_id: int
) -> None:
    missing_event = await client.post(
        "/api/v1/event", json={"Command": "event.track", "APIKey": tenant.key}
    )
    assert (missing_event.status_code, missing_event.json()) == (
        422,
        {"Errors": [{"Code": 5, "Message": "Missing event parameter"}]},
    )
    everything_wrong = await client.post(
        "/api/v1/event",
        json={"APIKey": tenant.key, "ListID": "abc", "Email": "not-an-email"},
    )
    assert [e["Code"] for e in everything_wrong.json()["Errors"]] == [5, 4, 7]
    foreign_list = await client.post(
        "/api/v1/event", json={"APIKey": tenant.key, "Event": "x", "ListID": 987654321}
    )
    assert [e["Code"] for e in foreign_list.json()["Errors"]] == [4]
    conversion = await client.post(
        "/api/v1/event",
        json={"APIKey": tenant.key, "Event": "conversion", "Properties": {"conversion-id": "c1"}},
    )
    assert conversion.status_code == 422
    assert [e["Code"] for e in conversion.json()["Errors"]] == [9, 10]
    assert conversion.json()["Errors"][0]["Message"] == (
        "Missing conversion-name event property (for conversion events)"
    )
    bare_conversion = await client.post(
        "/api/v1/event", json={"APIKey": tenant.key, "Event": "conversion"}
    )
    assert [e["Code"] for e in bare_conversion.json()["Errors"]] == [8, 9, 10]


async def test_missing_or_invalid_key_is_401_code_11(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for params in ({"Event": "x"}, {"Event": "x", "APIKey": "tb_live_wrong"}):
        response = await client.post("/api/v1/event", json=params)
        assert response.status_code == 401
        assert response.json()["Errors"][0]["Code"] == 11
    bearer = await client.post(
        "/api/v1/event", json={"Event": "x"}, headers={"Authorization": f"Bearer {tenant.key}"}
    )
    assert bearer.status_code == 200


async def test_form_body_legacy_api_php_and_case_insensitive_names(
    client: httpx.AsyncClient, tenant: Tenant, list_id: int
) -> None:
    form = await client.post(
        "/api/v1/event",
        data={
            "command": "event.track",
            "apikey": tenant.key,
            "event": "signup",
            "email": "form@example.com",
            "listid": str(list_id),
            "Properties[plan]": "pro",
            "Properties[$source]": "ad",
        },
    )
    as_json_string = await client.post(
        "/api.php",
        data={
            "Command": "event.track",
            "APIKey": tenant.key,
            "Event": "signup",
            "Email": "form@example.com",
            "Properties": '{"seats": 3}',
        },
    )
    legacy_get = await client.get(
        "/api.php",
        params={"Command": "event.track", "APIKey": tenant.key, "Event": "visit", "UUID": "v-9"},
    )
    for response in (form, as_json_string, legacy_get):
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "success"
    assert legacy_get.json()["uuid"] == "v-9"
    contact = (
        await client.get(
            "/v1/contacts", headers=tenant.headers, params={"email": "form@example.com"}
        )
    ).json()["data"][0]
    timeline = await client.get(f"/v1/contacts/{contact['id']}/events", headers=tenant.headers)
    stored = [
        (e["event"], e["properties"]) for e in timeline.json()["data"] if e["event"] == "signup"
    ]
    assert sorted(stored, key=str) == sorted(
        [("signup", {"plan": "pro", "$source": "ad"}), ("signup", {"seats": 3})], key=str
    )
    unknown = await client.get("/api.php", params={"Command": "lists.delete", "APIKey": tenant.key})
    assert unknown.status_code == 422
    assert unknown.json()["Errors"][0]["Code"] == 15


async def test_is_test_answers_success_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    response = await client.post(
        "/api/v1/event",
        json={
            "APIKey": tenant.key,
            "Event": "test_event",
            "Email": "test-only@example.com",
            "UUID": "test-visitor",
            "Properties": {"isTest": True, "anything": 1},
        },
    )
    assert response.status_code == 200
    assert response.json()["uuid"] == "test-visitor"
    async with services.db.read() as conn:
        for table in (events, contacts, contact_aliases, event_names):
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(table).where(table.c.account_id == tenant.id)
            )
            assert count == 0, table.name


async def test_anonymous_visitor_then_identify_moves_history(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    first = await client.post("/api/v1/event", json={"APIKey": tenant.key, "Event": "page_view"})
    visitor = first.json()["uuid"]
    assert UUID.match(visitor)
    assert first.json()["identify_event_sent"] is False
    await client.post(
        "/api/v1/event", json={"APIKey": tenant.key, "Event": "page_view", "UUID": visitor}
    )
    identified = await client.post(
        "/api/v1/event",
        json={
            "APIKey": tenant.key,
            "Event": "identify",
            "UUID": visitor,
            "Email": "later@example.com",
            "Properties": {"first_name": "Lee"},
        },
    )
    assert identified.json() == {
        "status": "success",
        "uuid": visitor,
        "external_id": None,
        "identify_event_sent": True,
    }
    contact = (
        await client.get(
            "/v1/contacts", headers=tenant.headers, params={"email": "later@example.com"}
        )
    ).json()["data"][0]
    assert contact["first_name"] == "Lee"
    timeline = await client.get(f"/v1/contacts/{contact['id']}/events", headers=tenant.headers)
    assert sorted(e["event"] for e in timeline.json()["data"]) == [
        "identify",
        "page_view",
        "page_view",
    ]
    # a new email for a known visitor sends an identify of its own, stored as an event
    other = await client.post(
        "/api/v1/event",
        json={"APIKey": tenant.key, "Event": "click", "UUID": "fresh-visitor", "ID": "ext-9"},
    )
    assert other.json()["identify_event_sent"] is True
    assert other.json()["external_id"] == "ext-9"


async def test_a_known_visitor_still_takes_each_change_a_request_names(
    client: httpx.AsyncClient, tenant: Tenant, list_id: int
) -> None:
    def event(**fields: object) -> dict[str, object]:
        return {"APIKey": tenant.key, "Event": "page_view", "Email": "known@example.com", **fields}

    first = (await client.post("/api/v1/event", json=event())).json()
    repeat = (await client.post("/api/v1/event", json=event())).json()
    assert repeat["uuid"] == first["uuid"]
    assert repeat["identify_event_sent"] is False

    changes = [
        event(ListID=list_id),
        event(ID="ext-known"),
        event(Event="identify", Properties={"first_name": "Kim"}),
        event(Event="identify", Properties={"first_name": "Kai"}),
    ]
    for body in changes:
        response = await client.post("/api/v1/event", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["uuid"] == first["uuid"]
    contact = (
        await client.get(
            "/v1/contacts", headers=tenant.headers, params={"email": "known@example.com"}
        )
    ).json()["data"][0]
    assert (contact["external_id"], contact["first_name"]) == ("ext-known", "Kai")
    details = (await client.get(f"/v1/contacts/{contact['id']}", headers=tenant.headers)).json()
    assert details["list_ids"] == [list_id]

    # another browser of the same contact: its visitor id is linked, once
    linked = (await client.post("/api/v1/event", json=event(UUID="second-browser"))).json()
    assert (linked["uuid"], linked["identify_event_sent"]) == ("second-browser", True)
    again = (await client.post("/api/v1/event", json=event(UUID="second-browser"))).json()
    assert again["identify_event_sent"] is False
    details = (await client.get(f"/v1/contacts/{contact['id']}", headers=tenant.headers)).json()
    assert sorted(details["aliases"]) == sorted([first["uuid"], "second-browser"])
    # an external id held by another contact is still refused, as before
    await client.post(
        "/api/v1/event",
        json={"APIKey": tenant.key, "Event": "page_view", "Email": "other@example.com"},
    )
    conflict = await client.post(
        "/api/v1/event", json=event(Email="other@example.com", ID="ext-known")
    )
    assert conflict.status_code == 409, conflict.text


async def test_conversion_and_reading_back_through_fluentcrm(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/api/v1/event",
        json={
            "APIKey": tenant.key,
            "Event": "conversion",
            "Email": "buyer@example.com",
            "Properties": {
                "conversion-id": "order-1",
                "conversion-name": "Order",
                "conversion-value": 49.9,
            },
        },
    )
    assert response.status_code == 200, response.text
    contact = (
        await client.get(
            "/v1/contacts", headers=tenant.headers, params={"email": "buyer@example.com"}
        )
    ).json()["data"][0]
    listing = await client.get(
        f"/wp-json/fluent-crm/v2/subscribers/{contact['id']}/tracking-events",
        auth=("wp", tenant.key),
    )
    rows = {(d["event_key"], d["title"], d["value"]) for d in listing.json()["events"]["data"]}
    assert ("conversion", "Order", "49.9") in rows


async def test_website_events_properties(
    client: httpx.AsyncClient, tenant: Tenant, list_id: int
) -> None:
    for event, properties in (
        ("page_view", {"product_id": "1", "$page_title": "P", "$current_url": "u"}),
        ("custom_event", {"event_property_2": 1, "event_property_1": 2}),
        ("page_view", {"product_id": "2"}),
    ):
        tracked = await client.post(
            "/api/v1/event",
            json={
                "APIKey": tenant.key,
                "Event": event,
                "ListID": list_id,
                "Properties": properties,
            },
        )
        assert tracked.status_code == 200
    await client.post(
        "/api/v1/event", json={"APIKey": tenant.key, "Event": "unlisted", "Properties": {"a": 1}}
    )
    response = await client.get(
        "/api/v1/website_events.properties",
        params={"ListID": list_id},
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert response.json() == {
        "ListID": list_id,
        "Properties": {
            "custom_event": ["event_property_1", "event_property_2"],
            "page_view": ["$current_url", "$page_title", "product_id"],
        },
    }
    legacy = await client.get(
        "/api.php",
        params={"Command": "website_events.properties", "APIKey": tenant.key, "ListID": list_id},
    )
    assert legacy.json() == response.json()
    errors = [
        ({}, 1, "Missing ListID parameter"),
        ({"ListID": "x"}, 2, "Invalid ListID parameter"),
        ({"ListID": 987654321}, 3, "List not found"),
    ]
    for params, code, message in errors:
        failed = await client.get(
            "/api/v1/website_events.properties", params={"APIKey": tenant.key, **params}
        )
        assert failed.status_code == 422
        assert failed.json() == {"Errors": [{"Code": code, "Message": message}]}


async def test_tracking_switched_off_is_code_14_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await client.patch("/v1/account", headers=tenant.headers, json={"tracking_enabled": False})
    response = await client.post(
        "/api/v1/event", json={"APIKey": tenant.key, "Event": "x", "Email": "off@example.com"}
    )
    assert response.status_code == 422
    assert response.json()["Errors"][0]["Code"] == 14
    found = await client.get(
        "/v1/contacts", headers=tenant.headers, params={"email": "off@example.com"}
    )
    assert found.json()["data"] == []


async def test_malformed_json_body_is_400_code_17(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for path in ("/api/v1/event", "/api.php"):
        response = await client.post(
            path,
            content=b'{"APIKey":',
            headers={"Content-Type": "application/json", **tenant.headers},
        )
        assert (response.status_code, response.json()) == (
            400,
            {"Errors": [{"Code": 17, "Message": "The request body is not valid JSON"}]},
        ), path


async def test_deeply_nested_properties_are_a_422_code_18(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for depth in (40, 300, 1000):
        body = (
            f'{{"Command":"event.track","APIKey":"{tenant.key}","Event":"deep",'
            f'"Email":"deep@example.com","Properties":{nested_json(depth)}}}'
        )
        response = await client.post(
            "/api/v1/event", headers={"Content-Type": "application/json"}, content=body
        )
        assert response.status_code == 422, (depth, response.text)
        assert response.json() == {
            "Errors": [{"Code": 18, "Message": "body must be nested at most 32 deep"}]
        }
    as_text = await client.post(
        "/api/v1/event",
        data={"APIKey": tenant.key, "Event": "deep", "Properties": nested_json(1000)},
    )
    assert as_text.status_code == 422, as_text.text
    assert as_text.json()["Errors"][0]["Code"] == 18


async def test_fractional_list_id_is_invalid_not_rounded(
    client: httpx.AsyncClient, tenant: Tenant, list_id: int
) -> None:
    for fractional in (list_id + 0.7, f"{list_id}.7", True):
        tracked = await client.post(
            "/api/v1/event",
            json={
                "APIKey": tenant.key,
                "Event": "page_view",
                "ListID": fractional,
                "Email": "fraction@example.com",
            },
        )
        assert (tracked.status_code, tracked.json()) == (
            422,
            {"Errors": [{"Code": 4, "Message": "Invalid ListID parameter"}]},
        ), fractional
        properties = await client.post(
            "/api.php",
            json={
                "Command": "website_events.properties",
                "APIKey": tenant.key,
                "ListID": fractional,
            },
        )
        assert (properties.status_code, properties.json()) == (
            422,
            {"Errors": [{"Code": 2, "Message": "Invalid ListID parameter"}]},
        ), fractional
    found = await client.get(
        "/v1/contacts", headers=tenant.headers, params={"email": "fraction@example.com"}
    )
    assert found.json()["data"] == []
    as_digits = await client.post(
        "/api/v1/event",
        json={"APIKey": tenant.key, "Event": "page_view", "ListID": f" {list_id} "},
    )
    assert as_digits.status_code == 200, as_digits.text


async def test_text_no_database_holds_in_id_or_uuid_fails_only_its_own_request(
    client: httpx.AsyncClient, tenant: Tenant, backend: str
) -> None:
    """A NUL in ID or UUID is refused as before (PostgreSQL cannot store it, SQLite can),
    and the known visitors' events sent beside it are stored as usual."""

    def event(n: int, **fields: object) -> dict[str, object]:
        return {
            "APIKey": tenant.key,
            "Event": "page_view",
            "Email": f"held{n}@example.com",
            **fields,
        }

    for n in range(10):
        assert (await client.post("/api/v1/event", json=event(n))).status_code == 200
    unstorable = [event(0, UUID="visitor\x00x"), event(1, ID="ext\x00y")]
    bodies = [*(event(n) for n in range(10)), *unstorable]
    responses = await asyncio.gather(*(client.post("/api/v1/event", json=b) for b in bodies))
    assert [r.status_code for r in responses[:10]] == [200] * 10
    if backend == "postgresql":
        for response in responses[10:]:
            assert response.status_code == 422, response.text
            assert response.json()["Errors"][0]["Code"] == 18
    else:
        assert [r.status_code for r in responses[10:]] == [200, 200]


async def test_a_list_id_naming_no_list_of_the_account_is_code_4_on_every_path(
    client: httpx.AsyncClient, tenant: Tenant, list_id: int, new_tenant: TenantFactory
) -> None:
    """Whether a ListID names a list is asked only where the visitor check cannot
    answer for it; every request naming another account's list is still refused."""
    other = await new_tenant("Other")
    created = await client.post("/v1/lists", headers=other.headers, json={"name": "Theirs"})
    foreign = created.json()["id"]

    def event(**fields: object) -> dict[str, object]:
        return {"APIKey": tenant.key, "Event": "page_view", **fields}

    member = event(Email="member@example.com", ListID=list_id)
    assert (await client.post("/api/v1/event", json=member)).status_code == 200
    assert (await client.post("/api/v1/event", json=member)).status_code == 200
    refused = [
        event(Email="member@example.com", ListID=foreign),
        event(Email="member@example.com", ListID=foreign, UUID="another-browser"),
        event(ID="ext-only", ListID=foreign),
        event(ListID=foreign),
        event(Email="member@example.com", ListID=foreign, Properties={"isTest": True}),
    ]
    for body in refused:
        response = await client.post("/api/v1/event", json=body)
        assert response.status_code == 422, (body, response.text)
        assert [e["Code"] for e in response.json()["Errors"]] == [4], body
    everything_wrong = await client.post(
        "/api/v1/event", json={"APIKey": tenant.key, "ListID": foreign, "Email": "not-an-email"}
    )
    assert [e["Code"] for e in everything_wrong.json()["Errors"]] == [5, 4, 7]
    await client.patch("/v1/account", headers=tenant.headers, json={"tracking_enabled": False})
    disabled = await client.post(
        "/api/v1/event", json=event(Email="member@example.com", ListID=foreign)
    )
    assert [e["Code"] for e in disabled.json()["Errors"]] == [4]
    found = await client.get(
        "/v1/contacts", headers=tenant.headers, params={"email": "member@example.com"}
    )
    [contact] = found.json()["data"]
    timeline = await client.get(f"/v1/contacts/{contact['id']}/events", headers=tenant.headers)
    stored = sorted(e["event"] for e in timeline.json()["data"])
    assert stored == ["identify", "page_view", "page_view"]
    # nor was anyone else created or identified on the way
    everyone = (await client.get("/v1/contacts", headers=tenant.headers)).json()["data"]
    assert [c["email"] for c in everyone] == ["member@example.com"]


async def test_a_list_id_beyond_64_bits_is_an_invalid_list_id(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for huge in (2**63, str(2**63), str(10**30)):
        tracked = await client.post(
            "/api/v1/event",
            json={
                "APIKey": tenant.key,
                "Event": "page_view",
                "ListID": huge,
                "Email": "huge@example.com",
            },
        )
        assert (tracked.status_code, tracked.json()) == (
            422,
            {"Errors": [{"Code": 4, "Message": "Invalid ListID parameter"}]},
        ), huge
        properties = await client.post(
            "/api.php",
            json={"Command": "website_events.properties", "APIKey": tenant.key, "ListID": huge},
        )
        assert (properties.status_code, properties.json()) == (
            422,
            {"Errors": [{"Code": 3, "Message": "List not found"}]},  # as an unknown list
        ), huge
