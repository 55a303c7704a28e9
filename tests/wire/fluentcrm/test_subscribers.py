"""The contact routes an integration calls before it tracks."""

from __future__ import annotations

import httpx

from tests.support import Tenant
from tests.wire.fluentcrm.conftest import BASE, basic

CAPTURED_CONTACT_FIELDS = [
    "id", "user_id", "hash", "contact_owner", "company_id", "prefix", "first_name",
    "last_name", "email", "timezone", "address_line_1", "address_line_2", "postal_code",
    "city", "state", "country", "ip", "latitude", "longitude", "total_points",
    "life_time_value", "phone", "status", "contact_type", "source", "avatar",
    "date_of_birth", "created_at", "last_activity", "updated_at", "full_name", "photo",
]  # fmt: skip


async def test_create_subscriber_as_captured(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        f"{BASE}/subscribers",
        auth=basic(tenant),
        json={"email": "Capture@Example.com", "first_name": "Capture", "status": "subscribed"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Successfully added the subscriber."
    assert body["action_type"] == "created"
    contact = body["contact"]
    assert list(contact) == CAPTURED_CONTACT_FIELDS
    assert contact["email"] == "capture@example.com"
    assert (contact["full_name"], contact["total_points"], contact["status"]) == (
        "Capture",
        "0",
        "subscribed",
    )
    fetched = await client.get(f"{BASE}/subscribers/{contact['id']}", auth=basic(tenant))
    assert fetched.json()["subscriber"]["email"] == "capture@example.com"
    native = await client.get(f"/v1/contacts/{contact['id']}", headers=tenant.headers)
    assert native.json()["first_name"] == "Capture"


async def test_create_subscriber_errors(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.post(f"{BASE}/subscribers", auth=basic(tenant), json={"email": "dup@example.com"})
    cases = [
        (
            {"email": "dup@example.com"},
            {"email": {"unique": "Provided email already assigned to another subscriber."}},
        ),
        (
            {"email": "not-an-email"},
            {"email": {"email": "The email must be a valid email address."}},
        ),
        ({"first_name": "No email"}, {"email": {"required": "The email field is required."}}),
        (
            {"email": "s@example.com", "status": "vip"},
            {"status": {"in": "The selected status is invalid."}},
        ),
    ]
    for body, expected in cases:
        response = await client.post(f"{BASE}/subscribers", auth=basic(tenant), json=body)
        assert (response.status_code, response.json()) == (422, expected), body


async def test_lists_and_tags_on_create(client: httpx.AsyncClient, tenant: Tenant) -> None:
    list_id = (
        await client.post("/v1/lists", headers=tenant.headers, json={"name": "Buyers"})
    ).json()["id"]
    response = await client.post(
        f"{BASE}/subscribers",
        auth=basic(tenant),
        data={"email": "tagged@example.com", "lists[]": [str(list_id)], "tags[]": ["VIP", "Beta"]},
    )
    assert response.status_code == 200, response.text
    contact_id = response.json()["contact"]["id"]
    native = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers)
    assert native.json()["list_ids"] == [list_id]
    unknown_list = await client.post(
        f"{BASE}/subscribers",
        auth=basic(tenant),
        json={"email": "x@example.com", "lists": [987654]},
    )
    assert unknown_list.status_code == 404
    assert (
        await client.get("/v1/contacts", headers=tenant.headers, params={"email": "x@example.com"})
    ).json()["data"] == []


async def test_search_pages_like_the_events_list(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for n in range(3):
        await client.post(
            f"{BASE}/subscribers", auth=basic(tenant), json={"email": f"findme{n}@example.com"}
        )
    await client.post(
        f"{BASE}/subscribers", auth=basic(tenant), json={"email": "other@example.com"}
    )
    page = (
        await client.get(
            f"{BASE}/subscribers", auth=basic(tenant), params={"search": "FINDME", "per_page": 2}
        )
    ).json()["subscribers"]
    assert (page["total"], page["last_page"], len(page["data"])) == (3, 2, 2)
    assert page["data"][0]["email"] == "findme2@example.com"
    assert page["next_page_url"] == f"{BASE}/subscribers?page=2"
