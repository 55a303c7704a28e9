"""trackcmp's POST /event and v1 track_event_add."""

from __future__ import annotations

import json

import httpx

from tests.support import Tenant
from tests.wire.activecampaign.conftest import SiteTracking, create_contact, token
from trackbook.accounts import service as accounts
from trackbook.services import Services

SPAWNED = {"success": 1, "message": "Event spawned"}


def form(account: SiteTracking, **fields: str) -> dict[str, str]:
    return {"actid": account.actid, "key": account.event_key, **fields}


async def test_seed_form_is_logged_with_visit_fields_as_properties(
    client: httpx.AsyncClient, tenant: Tenant, account: SiteTracking
) -> None:
    contact_id = await create_contact(client, tenant, "visitor@example.com")
    response = await client.post(
        "/event",
        data=form(
            account,
            event="file download request",
            eventdata="https://www.yoursite.com/downloads/file.pdf",
            **{
                "visit[email]": "visitor@example.com",
                "visit[url]": "https://www.yoursite.com/pricing",
                "visit[utm_source]": "newsletter",
            },
        ),
    )
    assert (response.status_code, response.json()) == (200, SPAWNED)
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    [event] = events.json()["data"]
    assert (event["event"], event["value"], event["source"]) == (
        "file download request",
        "https://www.yoursite.com/downloads/file.pdf",
        "activecampaign",
    )
    assert event["properties"] == {
        "url": "https://www.yoursite.com/pricing",
        "utm_source": "newsletter",
    }
    listing = await client.get(
        f"/wp-json/fluent-crm/v2/subscribers/{contact_id}/tracking-events", auth=("x", tenant.key)
    )
    assert listing.json()["events"]["data"][0]["event_key"] == "file download request"


async def test_unknown_contact_and_tracking_off_are_spawned_but_dropped(
    client: httpx.AsyncClient, tenant: Tenant, account: SiteTracking
) -> None:
    contact_id = await create_contact(client, tenant, "known@example.com")
    unknown = await client.post(
        "/event", data=form(account, event="signup", visit='{"email":"stranger@example.com"}')
    )
    no_email = await client.post("/event", data=form(account, event="signup"))
    await client.put(
        "/api/3/eventTracking", headers=token(tenant), json={"eventTracking": {"enabled": False}}
    )
    off = await client.post(
        "/event", data=form(account, event="signup", visit='{"email":"known@example.com"}')
    )
    for response in (unknown, no_email, off):
        assert (response.status_code, response.json()) == (200, SPAWNED)
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert events.json()["data"] == []
    strangers = await client.get(
        "/v1/contacts", headers=tenant.headers, params={"email": "stranger@example.com"}
    )
    assert strangers.json()["data"] == []
    dropped = (await client.get("/v1/dropped-events", headers=tenant.headers)).json()["data"]
    assert [(d["reason"], d["source"]) for d in dropped] == [
        ("tracking_disabled", "activecampaign"),
        ("unknown_contact", "activecampaign"),
        ("unknown_contact", "activecampaign"),
    ]
    assert dropped[2]["payload"]["visit"] == {"email": "stranger@example.com"}


async def test_refusals_are_success_0(
    client: httpx.AsyncClient, tenant: Tenant, account: SiteTracking
) -> None:
    await create_contact(client, tenant, "limits@example.com")
    visit = '{"email":"limits@example.com"}'
    cases = [
        ({"actid": account.actid, "key": "0" * 40, "event": "x", "visit": visit}, 403),
        # a key that is not ASCII is a wrong key, not a 500 (compare_digest refuses text)
        ({"actid": account.actid, "key": "\u00c2", "event": "x", "visit": visit}, 403),
        ({"actid": "000000000", "key": account.event_key, "event": "x", "visit": visit}, 403),
        ({"key": account.event_key, "event": "x"}, 403),
        (form(account, visit=visit), 400),
        (form(account, event="x" * 33, visit=visit), 400),
        (form(account, event="ok", visit="{not json"), 400),
    ]
    for data, status in cases:
        response = await client.post("/event", data=data)
        assert response.status_code == status, data
        assert response.json()["success"] == 0
        assert response.json()["message"]
    exactly_32 = await client.post("/event", data=form(account, event="x" * 32, visit=visit))
    assert exactly_32.json() == SPAWNED


async def test_more_than_200_visit_fields_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, account: SiteTracking
) -> None:
    await create_contact(client, tenant, "wide@example.com")

    def visit(fields: int) -> str:
        return json.dumps({"email": "wide@example.com"} | {f"f{i}": i for i in range(fields)})

    refused = await client.post("/event", data=form(account, event="wide", visit=visit(201)))
    assert refused.status_code == 400
    assert refused.json() == {"success": 0, "message": "properties must have at most 200 keys"}
    spawned = await client.post("/event", data=form(account, event="wide", visit=visit(200)))
    assert spawned.json() == SPAWNED


async def test_rotated_event_key_refuses_the_old_one(
    client: httpx.AsyncClient, tenant: Tenant, account: SiteTracking, services: Services
) -> None:
    await services.db.write(accounts.rotate_event_key, tenant.id, keyring=services.keyring)
    old = await client.post("/event", data=form(account, event="x"))
    assert old.status_code == 403


async def test_v1_track_event_add(
    client: httpx.AsyncClient, tenant: Tenant, account: SiteTracking
) -> None:
    contact_id = await create_contact(client, tenant, "v1@example.com")
    url = "/admin/api.php?api_action=track_event_add&api_output=json"
    fields = {
        "api_key": tenant.key,
        "actid": account.actid,
        "key": account.event_key,
        "event": "my_custom_event",
        "eventdata": "12345",
        "visit": '{"email":"v1@example.com"}',
    }
    response = await client.post(url, data=fields)
    assert (response.status_code, response.json()) == (200, SPAWNED)
    as_json = await client.post(url, json=fields)
    assert as_json.json()["success"] == 0
    assert "form" in as_json.json()["message"]
    wrong_key = await client.post(url, data={**fields, "api_key": "tb_live_nope"})
    assert wrong_key.status_code == 403
    assert wrong_key.json()["success"] == 0
    not_ascii = await client.post(url, data={**fields, "key": "cl\u00e9"})
    assert (not_ascii.status_code, not_ascii.json()["success"]) == (403, 0)
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert [(e["event"], e["value"]) for e in events.json()["data"]] == [
        ("my_custom_event", "12345")
    ]
