"""Contacts and lists through /v1."""

from __future__ import annotations

import httpx

from tests.conftest import TenantFactory
from tests.support import Tenant


async def test_contact_upsert_get_patch_delete(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await client.post(
        "/v1/contacts",
        headers=tenant.headers,
        json={"email": "Jo@Example.com", "first_name": "Jo"},
    )
    assert created.status_code == 201
    contact_id = created.json()["id"]
    updated = await client.post(
        "/v1/contacts",
        headers=tenant.headers,
        json={"email": "jo@example.com", "external_id": "crm-1", "last_name": "Doe"},
    )
    assert updated.status_code == 200
    assert updated.json()["id"] == contact_id
    assert updated.json()["first_name"] == "Jo"
    assert updated.json()["external_id"] == "crm-1"

    found = await client.get(
        "/v1/contacts", headers=tenant.headers, params={"email": "JO@example.com"}
    )
    assert [c["id"] for c in found.json()["data"]] == [contact_id]

    patched = await client.patch(
        f"/v1/contacts/{contact_id}",
        headers=tenant.headers,
        json={"status": "unsubscribed", "first_name": None},
    )
    assert patched.json()["status"] == "unsubscribed"
    assert patched.json()["first_name"] is None
    bad_status = await client.patch(
        f"/v1/contacts/{contact_id}", headers=tenant.headers, json={"status": "gone"}
    )
    assert bad_status.status_code == 422
    assert bad_status.json()["error"]["field"] == "status"

    await client.post(
        "/v1/track", headers=tenant.headers, json={"event": "x", "contact": {"id": contact_id}}
    )
    deleted = await client.delete(f"/v1/contacts/{contact_id}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (
        await client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers)
    ).status_code == 404
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert events.status_code == 404


async def test_email_taken_by_another_contact_is_a_conflict(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    first = await client.post("/v1/contacts", headers=tenant.headers, json={"email": "a@x.io"})
    second = await client.post("/v1/contacts", headers=tenant.headers, json={"email": "b@x.io"})
    clash = await client.patch(
        f"/v1/contacts/{second.json()['id']}", headers=tenant.headers, json={"email": "a@x.io"}
    )
    assert first.status_code == 201
    assert clash.status_code == 409
    needs_identity = await client.post("/v1/contacts", headers=tenant.headers, json={})
    assert needs_identity.status_code == 422


async def test_contacts_page_with_a_cursor(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for n in range(5):
        await client.post("/v1/contacts", headers=tenant.headers, json={"email": f"p{n}@x.io"})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/contacts", headers=tenant.headers, params=params)).json()
        seen += [c["email"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p{n}@x.io" for n in range(5)]


async def test_lists_and_membership(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await client.post("/v1/lists", headers=tenant.headers, json={"name": "Customers"})
    assert created.status_code == 201
    list_id = created.json()["id"]
    duplicate = await client.post("/v1/lists", headers=tenant.headers, json={"name": "Customers"})
    assert duplicate.status_code == 409
    contact = await client.post("/v1/contacts", headers=tenant.headers, json={"email": "m@x.io"})
    contact_id = contact.json()["id"]
    member = f"/v1/lists/{list_id}/contacts/{contact_id}"
    assert (await client.put(member, headers=tenant.headers)).status_code == 201
    assert (await client.put(member, headers=tenant.headers)).status_code == 200
    lists = await client.get("/v1/lists", headers=tenant.headers)
    assert [(item["name"], item["member_count"]) for item in lists.json()["data"]] == [
        ("Customers", 1)
    ]
    details = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers)
    assert details.json()["list_ids"] == [list_id]
    assert (await client.delete(member, headers=tenant.headers)).status_code == 204
    assert (await client.delete(member, headers=tenant.headers)).status_code == 404
    one = await client.get(f"/v1/lists/{list_id}", headers=tenant.headers)
    assert one.json()["member_count"] == 0
    missing = await client.put(f"/v1/lists/{list_id}/contacts/99999999", headers=tenant.headers)
    assert missing.status_code == 404


async def test_deleting_a_list_takes_its_memberships_and_keeps_its_events(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await client.post("/v1/lists", headers=tenant.headers, json={"name": "Leads"})
    list_id = created.json()["id"]
    contact = await client.post("/v1/contacts", headers=tenant.headers, json={"email": "l@x.io"})
    contact_id = contact.json()["id"]
    await client.put(f"/v1/lists/{list_id}/contacts/{contact_id}", headers=tenant.headers)
    # an Octeth event on the list: the event and its list's property names refer to it
    octeth = await client.post(
        "/api/v1/event",
        json={"APIKey": tenant.key, "Event": "visit", "ListID": list_id, "Email": "l@x.io"},
    )
    assert octeth.status_code == 200, octeth.text

    deleted = await client.delete(f"/v1/lists/{list_id}", headers=tenant.headers)
    assert deleted.status_code == 204, deleted.text
    assert (await client.get(f"/v1/lists/{list_id}", headers=tenant.headers)).status_code == 404
    assert (await client.delete(f"/v1/lists/{list_id}", headers=tenant.headers)).status_code == 404
    details = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers)
    assert details.json()["list_ids"] == []
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert [event["event"] for event in events.json()["data"]] == ["visit", "identify"]
    again = await client.post("/v1/lists", headers=tenant.headers, json={"name": "Leads"})
    assert again.status_code == 201


async def test_another_accounts_list_cannot_be_deleted(
    client: httpx.AsyncClient, tenant: Tenant, new_tenant: TenantFactory
) -> None:
    other = await new_tenant("Other")
    theirs = await client.post("/v1/lists", headers=other.headers, json={"name": "Theirs"})
    url = f"/v1/lists/{theirs.json()['id']}"
    refused = await client.delete(url, headers=tenant.headers)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "list_not_found"
    assert (await client.get(url, headers=other.headers)).status_code == 200


async def test_a_list_an_automation_or_a_segment_uses_is_not_deleted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await client.post("/v1/lists", headers=tenant.headers, json={"name": "VIP"})
    list_id = created.json()["id"]
    url = f"/v1/lists/{list_id}"
    automation = await client.post(
        "/v1/automations",
        headers=tenant.headers,
        json={
            "name": "Promote",
            "trigger": {"event": "purchase"},
            "actions": [{"type": "remove_from_list", "list_id": list_id}],
        },
    )
    assert automation.status_code == 201, automation.text
    segment = await client.post(
        "/v1/segments",
        headers=tenant.headers,
        json={
            "name": "Not VIP",
            "definition": {"all": [{"any": [{"list": {"id": list_id, "member": False}}]}]},
        },
    )
    assert segment.status_code == 201, segment.text

    refused = await client.delete(url, headers=tenant.headers)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "list_in_use"
    automation_id, segment_id = automation.json()["id"], segment.json()["id"]
    assert f"automation {automation_id} (Promote)" in error["message"]
    assert f"segment {segment_id} (Not VIP)" in error["message"]

    await client.delete(f"/v1/automations/{automation_id}", headers=tenant.headers)
    refused = await client.delete(url, headers=tenant.headers)
    assert refused.status_code == 409
    assert "automation" not in refused.json()["error"]["message"]
    await client.delete(f"/v1/segments/{segment_id}", headers=tenant.headers)
    assert (await client.delete(url, headers=tenant.headers)).status_code == 204


async def test_timeline_pages_newest_first_with_filters(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    contact = {"email": "t@x.io"}
    for day in range(1, 8):
        name = "even" if day % 2 == 0 else "odd"
        await client.post(
            "/v1/track",
            headers=tenant.headers,
            json={"event": name, "contact": contact, "timestamp": f"2026-01-0{day}T10:00:00Z"},
        )
    contact_id = (
        await client.get("/v1/contacts", headers=tenant.headers, params={"email": "t@x.io"})
    ).json()["data"][0]["id"]
    url = f"/v1/contacts/{contact_id}/events"
    days: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(url, headers=tenant.headers, params=params)).json()
        days += [e["occurred_at"][:10] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert days == [f"2026-01-0{d}" for d in range(7, 0, -1)]
    filtered = await client.get(
        url,
        headers=tenant.headers,
        params={"name": "even", "since": "2026-01-03T00:00:00Z", "until": "2026-01-06T10:00:00Z"},
    )
    assert [e["occurred_at"][:10] for e in filtered.json()["data"]] == ["2026-01-04"]
    bad_cursor = await client.get(url, headers=tenant.headers, params={"cursor": "nonsense"})
    assert bad_cursor.status_code == 422
    too_many = await client.get(url, headers=tenant.headers, params={"limit": 1001})
    assert too_many.status_code == 422
