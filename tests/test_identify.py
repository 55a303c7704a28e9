"""POST /v1/identify: anonymous history joins the identified contact."""

from __future__ import annotations

import httpx

from tests.support import Tenant


async def test_identify_moves_earlier_anonymous_events_and_counters(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    known = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "page_view", "title": "Home", "contact": {"email": "ann@example.com"}},
    )
    for title in ("Home", "Home", "Pricing"):
        anonymous = await client.post(
            "/v1/track",
            headers=tenant.headers,
            json={"event": "page_view", "title": title, "contact": {"anonymous_id": "visitor-9"}},
        )
        assert anonymous.status_code == 201
    anonymous_contact = anonymous.json()["contact_id"]
    assert anonymous_contact != known.json()["contact_id"]

    identified = await client.post(
        "/v1/identify",
        headers=tenant.headers,
        json={
            "anonymous_id": "visitor-9",
            "contact": {"email": "ann@example.com"},
            "traits": {"first_name": "Ann"},
        },
    )
    assert identified.status_code == 200, identified.text
    contact_id = identified.json()["id"]
    assert contact_id == known.json()["contact_id"]
    assert identified.json()["first_name"] == "Ann"

    timeline = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert len(timeline.json()["data"]) == 4
    counters = await client.get(f"/v1/contacts/{contact_id}/counters", headers=tenant.headers)
    assert sorted((c["title"], c["counter"]) for c in counters.json()["data"]) == [
        ("Home", 3),
        ("Pricing", 1),
    ]
    gone = await client.get(f"/v1/contacts/{anonymous_contact}", headers=tenant.headers)
    assert gone.status_code == 404
    details = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers)
    assert details.json()["aliases"] == ["visitor-9"]

    later = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "page_view", "title": "Pricing", "contact": {"anonymous_id": "visitor-9"}},
    )
    assert later.json()["contact_id"] == contact_id


async def test_identify_a_new_anonymous_id_links_it_and_creates_the_contact(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    identified = await client.post(
        "/v1/identify",
        headers=tenant.headers,
        json={"anonymous_id": "fresh", "contact": {"external_id": "crm-7"}},
    )
    assert identified.status_code == 200
    tracked = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "x", "contact": {"anonymous_id": "fresh"}},
    )
    assert tracked.json()["contact_id"] == identified.json()["id"]


async def test_identify_refuses_to_take_an_anonymous_id_from_another_person(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for email in ("one@example.com", "two@example.com"):
        response = await client.post(
            "/v1/identify",
            headers=tenant.headers,
            json={"anonymous_id": "shared-laptop", "contact": {"email": email}},
        )
    assert response.status_code == 409
    unknown_trait = await client.post(
        "/v1/identify",
        headers=tenant.headers,
        json={"anonymous_id": "v", "contact": {"email": "x@example.com"}, "traits": {"age": 3}},
    )
    assert unknown_trait.status_code == 422
    assert unknown_trait.json()["error"]["field"] == "traits.age"


async def test_a_new_email_with_a_held_external_id_names_the_contact_holding_it(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    held = await client.post(
        "/v1/contacts",
        headers=tenant.headers,
        json={"email": "ext@example.com", "external_id": "x-1"},
    )
    named = {"email": "other@example.com", "external_id": "x-1"}
    identified = await client.post(
        "/v1/identify", headers=tenant.headers, json={"anonymous_id": "v-x1", "contact": named}
    )
    assert identified.status_code == 200, identified.text
    assert identified.json()["id"] == held.json()["id"]
    assert identified.json()["email"] == "ext@example.com"
    tracked = await client.post(
        "/v1/track", headers=tenant.headers, json={"event": "seen", "contact": named}
    )
    assert tracked.status_code == 201, tracked.text
    assert tracked.json()["contact_id"] == held.json()["id"]
