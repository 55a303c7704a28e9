"""A contact's right of access and erasure, and the dashboard's security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.automations.conftest import WebhookReceiver, drain
from tests.support import Tenant
from trackbook.accounts import service as accounts
from trackbook.db.tables import metadata
from trackbook.services import Services


async def rows_about(services: Services, contact_id: int, event_ids: list[int]) -> dict[str, int]:
    """Rows of any table that name the contact, its events, or (in a payload) its email,
    external id or visitor id."""
    found: dict[str, int] = {}
    async with services.db.read() as conn:
        for table in metadata.sorted_tables:
            checks = []
            if "contact_id" in table.c:
                checks.append(table.c.contact_id == contact_id)
            if "event_id" in table.c and event_ids:
                checks.append(table.c.event_id.in_(event_ids))
            if table.name == "contacts":
                checks.append(table.c.id == contact_id)
            if "payload" in table.c:
                text = sa.func.lower(sa.cast(table.c.payload, sa.Text))
                checks.extend(
                    text.contains(name) for name in ("erase.me@example.com", "visitor-9", "ext-9")
                )
            if checks:
                total = await conn.scalar(
                    sa.select(sa.func.count()).select_from(table).where(sa.or_(*checks))
                )
                if total:
                    found[table.name] = int(total)
    return found


async def test_export_then_erase_leaves_nothing_about_the_contact(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, receiver: WebhookReceiver
) -> None:
    hook = await client.post(
        "/v1/webhooks",
        headers=tenant.headers,
        json={"url": receiver.url, "event_names": ["*"]},
    )
    await client.post(
        "/v1/automations",
        headers=tenant.headers,
        json={
            "name": "Tag and notify",
            "trigger": {"event": "purchase"},
            "actions": [
                {"type": "add_tag", "tag": "buyer"},
                {"type": "webhook", "webhook_id": hook.json()["id"]},
            ],
        },
    )
    lists = await client.post("/v1/lists", headers=tenant.headers, json={"name": "Buyers"})
    tracked = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={
            "event": "purchase",
            "contact": {"email": "Erase.Me@example.com"},
            "message_id": "order-9",
            "properties": {"sku": "A-1"},
        },
    )
    contact_id = tracked.json()["contact_id"]
    await client.post(
        "/v1/identify",
        headers=tenant.headers,
        json={"anonymous_id": "visitor-9", "contact": {"id": contact_id}},
    )
    await client.patch(
        f"/v1/contacts/{contact_id}", headers=tenant.headers, json={"external_id": "ext-9"}
    )
    # Segment calls Trackbook does not store name the contact by its ids alone
    for who in ({"anonymousId": "visitor-9"}, {"userId": "ext-9"}):
        grouped = await client.post(
            "/segment/v1/group",
            auth=(tenant.key, ""),
            json={**who, "groupId": "acme", "traits": {"plan": "pro"}},
        )
        assert grouped.status_code == 200, grouped.text
    await client.put(
        f"/v1/lists/{lists.json()['id']}/contacts/{contact_id}", headers=tenant.headers
    )
    account = await services.db.query(accounts.get_account, tenant.id)
    # tracking off: a dropped event that names the contact
    await services.db.write(accounts.update_account, tenant.id, tracking_enabled=False)
    services.auth.forget_account(tenant.id)
    await client.post(
        "/event",
        data={
            "actid": account.actid,
            "key": services.keyring.open(account.sealed_event_key),
            "event": "visit",
            "visit[email]": "ERASE.ME@example.com",
        },
    )
    await services.db.write(accounts.update_account, tenant.id, tracking_enabled=True)
    services.auth.forget_account(tenant.id)
    await drain(services)
    event_ids = [tracked.json()["id"]]

    exported = await client.get(f"/v1/contacts/{contact_id}/export", headers=tenant.headers)
    assert exported.status_code == 200
    held = exported.json()
    assert held["contact"]["email"] == "erase.me@example.com"
    assert held["aliases"] == ["visitor-9"]
    assert held["tags"] == ["buyer"]
    assert [item["name"] for item in held["lists"]] == ["Buyers"]
    assert [event["name"] for event in held["events"]] == ["purchase"]
    assert held["events"][0]["properties"] == {"sku": "A-1"}
    assert [run["status"] for run in held["automation_runs"]] == ["done"]
    assert {d["status"] for d in held["webhook_deliveries"]} == {"delivered"}
    assert len(held["webhook_deliveries"]) == 2  # the subscription and the automation
    assert sorted(d["reason"] for d in held["dropped_events"]) == [
        "not_supported",
        "not_supported",
        "tracking_disabled",
    ]
    before = await rows_about(services, contact_id, event_ids)
    assert {"events", "event_message_ids", "deliveries", "dropped_events"} <= set(before)

    erased = await client.delete(f"/v1/contacts/{contact_id}", headers=tenant.headers)
    assert erased.status_code == 204
    assert await rows_about(services, contact_id, event_ids) == {}
    replay = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={
            "event": "purchase",
            "contact": {"email": "new@example.com"},
            "message_id": "order-9",
        },
    )
    assert replay.status_code == 201  # its message id went with it


async def test_dashboard_pages_carry_security_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/signin")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    for reference in ("/docs", "/redoc"):
        docs = await client.get(reference)
        # its own policy: its scripts and styles, all from Trackbook
        policy = docs.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "http" not in policy
        assert docs.headers["x-frame-options"] == "DENY"
    api = await client.get("/healthz")
    assert api.headers["x-content-type-options"] == "nosniff"


async def dropped_payloads(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    listed = await client.get("/v1/dropped-events", headers=tenant.headers, params={"limit": 100})
    return [item["payload"] for item in listed.json()["data"]]


async def test_export_and_erase_match_dropped_events_by_exact_identity(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    bob = await client.post(
        "/v1/contacts", headers=tenant.headers, json={"email": "bob@ex.com", "external_id": "7"}
    )
    assert bob.status_code == 201, bob.text
    bob_id = bob.json()["id"]
    account = await services.db.query(accounts.get_account, tenant.id)
    # an unknown contact at ActiveCampaign's event endpoint: dropped, not stored
    spawned = await client.post(
        "/event",
        data={
            "actid": account.actid,
            "key": services.keyring.open(account.sealed_event_key),
            "event": "visit",
            "visit[email]": "mallory.bob@ex.com",
        },
    )
    assert spawned.status_code == 200, spawned.text
    # Segment group calls are kept as dropped events
    for message in (
        {"anonymousId": "someone-else", "messageId": "7"},
        {"userId": "7", "messageId": "bob-by-id"},
        {"anonymousId": "v-1", "context": {"traits": {"email": "Bob@Ex.com"}}},
    ):
        grouped = await client.post(
            "/segment/v1/group", auth=(tenant.key, ""), json={**message, "groupId": "acme"}
        )
        assert grouped.status_code == 200, grouped.text
    assert len(await dropped_payloads(client, tenant)) == 4

    exported = await client.get(f"/v1/contacts/{bob_id}/export", headers=tenant.headers)
    held = [item["payload"]["message"] for item in exported.json()["dropped_events"]]
    assert sorted(str(message.get("messageId")) for message in held) == ["None", "bob-by-id"]
    assert [message["context"] for message in held if "context" in message] == [
        {"traits": {"email": "Bob@Ex.com"}}
    ]

    erased = await client.delete(f"/v1/contacts/{bob_id}", headers=tenant.headers)
    assert erased.status_code == 204
    left = await dropped_payloads(client, tenant)
    assert sorted(
        payload["visit"]["email"] if "visit" in payload else payload["message"]["messageId"]
        for payload in left
    ) == ["7", "mallory.bob@ex.com"]


async def test_erase_removes_property_names_only_its_events_brought_in(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    listed = await client.post("/v1/lists", headers=tenant.headers, json={"name": "News"})
    list_id = listed.json()["id"]
    for email, properties in (
        ("bob@ex.com", {"sku": "A-1", "bobs_diagnosis": "flu"}),
        ("alice@ex.com", {"sku": "B-2", "coupon": "X"}),
        ("bob@ex.com", {"coupon": "Y"}),
    ):
        tracked = await client.post(
            "/api/v1/event",
            json={
                "APIKey": tenant.key,
                "Event": "purchase",
                "Email": email,
                "ListID": list_id,
                "Properties": properties,
            },
        )
        assert tracked.status_code == 200, tracked.text

    async def catalog() -> tuple[list[str], list[str]]:
        named = await client.get("/v1/event-names/purchase/properties", headers=tenant.headers)
        of_list = await client.get(
            "/api/v1/website_events.properties",
            params={"ListID": list_id},
            headers={"Authorization": f"Bearer {tenant.key}"},
        )
        return named.json()["properties"], of_list.json()["Properties"]["purchase"]

    assert await catalog() == (["bobs_diagnosis", "coupon", "sku"],) * 2
    found = await client.get("/v1/contacts", headers=tenant.headers, params={"email": "bob@ex.com"})
    [bob] = found.json()["data"]
    erased = await client.delete(f"/v1/contacts/{bob['id']}", headers=tenant.headers)
    assert erased.status_code == 204
    assert await catalog() == (["coupon", "sku"],) * 2


async def test_erased_text_is_left_neither_in_the_sqlite_file_nor_its_wal(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, database_url: str
) -> None:
    if not services.db.is_sqlite:
        pytest.skip("SQLite's file and WAL")
    marker = "scrub-me-5e1f9c@example.com"
    tracked = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "signup", "contact": {"email": marker}, "title": marker},
    )
    assert tracked.status_code == 201, tracked.text
    path = Path(sa.make_url(database_url).database or "")

    def on_disk() -> bool:
        return any(
            marker.encode() in file.read_bytes()
            for file in (path, path.with_name(path.name + "-wal"))
            if file.exists()
        )

    assert on_disk()
    erased = await client.delete(
        f"/v1/contacts/{tracked.json()['contact_id']}", headers=tenant.headers
    )
    assert erased.status_code == 204
    assert not on_disk()
