"""The v3 event-tracking guide replayed: switch, whitelist, tracking logs, activities."""

from __future__ import annotations

import re

import httpx
import orjson

from tests.support import Tenant
from tests.wire.activecampaign.conftest import SiteTracking, create_contact, token

SEED_LOG = {
    "subscriberid": "157",
    "type": "file download request",
    "value": "https://www.yoursite.com/downloads/file.pdf",
    "tstamp": "2023-03-01T15:36:03-06:00",
    "hash": "1b93f93c256d087df3778b97577232a1772b4d7f",
    "links": {"contact": "https://x.api-us1.com/api/3/trackingLogs/27/contact"},
    "id": "27",
    "contact": "157",
}
SEED_ACTIVITY = {
    "tstamp": "2023-03-01T15:36:03-06:00",
    "subscriberid": "157",
    "reference_type": "TrackingLog",
    "reference_id": "27",
    "reference_action": "file download request",
    "jsonData": None,
    "userid": "0",
    "permission": "",
    "referenceModelName": "tracking-log",
    "reference": {"type": "tracking-log", "id": "27"},
    "links": {"user": "", "recipients": "", "reference": "", "notes": ""},
    "id": "483",
    "user": None,
}
TSTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


async def test_event_tracking_switch(client: httpx.AsyncClient, tenant: Tenant) -> None:
    got = await client.get("/api/3/eventTracking", headers=token(tenant))
    assert got.json() == {"eventTracking": {"enabled": True}}
    for method in ("POST", "PUT"):
        off = await client.request(
            method, "/api/3/eventTracking", headers=token(tenant),
            json={"eventTracking": {"enabled": False}},
        )  # fmt: skip
        assert off.json() == {"eventTracking": {"enabled": False}}
        account = await client.get("/v1/account", headers=tenant.headers)
        assert account.json()["tracking_enabled"] is False
        await client.post(
            "/api/3/eventTracking", headers=token(tenant), json={"eventTracking": {"enabled": True}}
        )
    assert (await client.get("/api/3/eventTracking", headers=token(tenant))).json() == {
        "eventTracking": {"enabled": True}
    }


async def test_bad_or_missing_token_is_403(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Api-Token": "nope"}):
        response = await client.get("/api/3/eventTracking", headers=headers)
        assert response.status_code == 403
        assert response.json() == {"message": "Forbidden"}


async def test_whitelist_create_list_delete_with_a_space(
    client: httpx.AsyncClient, tenant: Tenant, account: SiteTracking
) -> None:
    created = await client.post(
        "/api/3/eventTrackingEvents",
        headers=token(tenant),
        json={"eventTrackingEvent": {"name": "file download request"}},
    )
    assert created.status_code == 201
    assert created.json() == {"eventTrackingEvent": {"name": "file download request"}}
    listed = await client.get("/api/3/eventTrackingEvents", headers=token(tenant))
    assert listed.json() == {
        "eventTrackingEvents": [{"name": "file download request"}],
        "meta": {"total": 1},
    }
    for body, code in (
        ({"eventTrackingEvent": {"name": "file download request"}}, "duplicate"),
        ({"eventTrackingEvent": {"name": ""}}, "field_missing"),
    ):
        refused = await client.post("/api/3/eventTrackingEvents", headers=token(tenant), json=body)
        assert refused.status_code == 422
        [error] = refused.json()["errors"]
        assert list(error) == ["title", "detail", "code", "source"]
        assert error["code"] == code
        assert error["source"] == {"pointer": "/data/attributes/name"}

    contact_id = await create_contact(client, tenant, "dl@example.com")
    await client.post(
        "/event",
        data={
            "actid": account.actid,
            "key": account.event_key,
            "event": "file download request",
            "visit": '{"email":"dl@example.com"}',
        },
    )
    deleted = await client.delete(
        "/api/3/eventTrackingEvents/file%20download%20request", headers=token(tenant)
    )
    assert deleted.status_code == 200
    assert (await client.get("/api/3/eventTrackingEvents", headers=token(tenant))).json() == {
        "eventTrackingEvents": [],
        "meta": {"total": 0},
    }
    logs = await client.get(f"/api/3/contacts/{contact_id}/trackingLogs", headers=token(tenant))
    assert [log["type"] for log in logs.json()["trackingLogs"]] == ["file download request"]
    missing = await client.delete("/api/3/eventTrackingEvents/never%20seen", headers=token(tenant))
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["status"] == 404
    assert missing.json()["errors"][0]["title"] == "Not Found"


async def test_tracking_logs_and_activities_match_the_seed(
    client: httpx.AsyncClient, tenant: Tenant, account: SiteTracking
) -> None:
    contact_id = await create_contact(client, tenant, "logs@example.com")
    spawned = await client.post(
        "/event",
        data={
            "actid": account.actid,
            "key": account.event_key,
            "event": "file download request",
            "eventdata": "https://www.yoursite.com/downloads/file.pdf",
            "visit": '{"email":"logs@example.com"}',
        },
    )
    assert spawned.json() == {"success": 1, "message": "Event spawned"}
    logs = await client.get(f"/api/3/contacts/{contact_id}/trackingLogs", headers=token(tenant))
    assert list(logs.json()) == ["trackingLogs"]
    [log] = logs.json()["trackingLogs"]
    assert list(log) == list(SEED_LOG)
    for field, seed_value in SEED_LOG.items():
        assert type(log[field]) is type(seed_value), field
    assert (log["subscriberid"], log["contact"], log["type"], log["value"]) == (
        contact_id,
        contact_id,
        "file download request",
        "https://www.yoursite.com/downloads/file.pdf",
    )
    assert TSTAMP.match(log["tstamp"])
    assert re.fullmatch(r"[0-9a-f]{40}", log["hash"])
    again = await client.get(f"/api/3/contacts/{contact_id}/trackingLogs", headers=token(tenant))
    assert again.json()["trackingLogs"][0]["hash"] == log["hash"]
    assert log["links"]["contact"].startswith("http://trackbook.test/api/3/trackingLogs/")
    linked = await client.get(log["links"]["contact"], headers=token(tenant))
    assert linked.json()["contact"]["email"] == "logs@example.com"

    activities = await client.get(
        "/api/3/activities", headers=token(tenant), params={"contact": contact_id}
    )
    body = activities.json()
    assert list(body) == ["trackingLogs", "activities", "meta"]
    assert body["trackingLogs"] == [log]
    assert body["meta"] == {"total": "1"}
    [activity] = body["activities"]
    assert list(activity) == list(SEED_ACTIVITY)
    assert (activity["reference_type"], activity["reference_id"], activity["reference_action"]) == (
        "TrackingLog",
        log["id"],
        "file download request",
    )
    assert activity["referenceModelName"] == "tracking-log"
    assert list(activity["links"]) == list(SEED_ACTIVITY["links"])  # type: ignore[call-overload]

    unknown = await client.get("/api/3/contacts/987654321/trackingLogs", headers=token(tenant))
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"message": "No Result found for Subscriber with id 987654321"},
    )
    for huge in (2**63, 10**30):  # ids no database holds, answered as any unknown one
        beyond = await client.get(f"/api/3/contacts/{huge}/trackingLogs", headers=token(tenant))
        assert (beyond.status_code, beyond.json()) == (
            404,
            {"message": f"No Result found for Subscriber with id {huge}"},
        )


async def test_contacts(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await client.post(
        "/api/3/contacts",
        headers=token(tenant),
        json={"contact": {"email": "Ann@Example.com", "firstName": "Ann", "phone": "+1 555"}},
    )
    assert created.status_code == 201
    contact = created.json()["contact"]
    assert (contact["email"], contact["firstName"], contact["phone"]) == (
        "ann@example.com",
        "Ann",
        "+1 555",
    )
    assert isinstance(contact["id"], str)
    duplicate = await client.post(
        "/api/3/contacts", headers=token(tenant), json={"contact": {"email": "ann@example.com"}}
    )
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"][0]["code"] == "duplicate"
    assert duplicate.json()["errors"][0]["source"] == {"pointer": "/data/attributes/email"}
    synced = await client.post(
        "/api/3/contact/sync",
        headers=token(tenant),
        json={"contact": {"email": "ann@example.com", "lastName": "Lee"}},
    )
    assert synced.status_code == 200
    assert synced.json()["contact"]["lastName"] == "Lee"
    new = await client.post(
        "/api/3/contact/sync", headers=token(tenant), json={"contact": {"email": "new@example.com"}}
    )
    assert new.status_code == 201
    found = await client.get(
        "/api/3/contacts", headers=token(tenant), params={"email": "ann@example.com"}
    )
    assert found.json()["meta"] == {"total": "1"}
    assert found.json()["contacts"][0]["id"] == contact["id"]
    updated = await client.put(
        f"/api/3/contacts/{contact['id']}",
        headers=token(tenant),
        json={"contact": {"firstName": "Anne"}},
    )
    assert updated.json()["contact"]["firstName"] == "Anne"
    deleted = await client.delete(f"/api/3/contacts/{contact['id']}", headers=token(tenant))
    assert deleted.status_code == 200
    gone = await client.get(f"/api/3/contacts/{contact['id']}", headers=token(tenant))
    assert gone.status_code == 404


async def test_request_validation_errors_take_the_v3_errors_shape(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    cases = [
        ({}, "field_missing", "/data"),
        ({"eventTrackingEvent": "download"}, "field_invalid", "/data"),
        ({"eventTrackingEvent": {"name": 7}}, "field_invalid", "/data/attributes/name"),
        (b'{"eventTrackingEvent":', "body_invalid", "/data"),
    ]
    for body, code, pointer in cases:
        refused = await client.post(
            "/api/3/eventTrackingEvents",
            headers={**token(tenant), "Content-Type": "application/json"},
            content=body if isinstance(body, bytes) else orjson.dumps(body),
        )
        assert refused.status_code == 422, body
        [error] = refused.json()["errors"]
        assert list(error) == ["title", "detail", "code", "source"], body
        assert (error["code"], error["source"]) == (code, {"pointer": pointer}), body
        assert error["title"], body
        assert error["detail"], body
    listed = await client.get("/api/3/eventTrackingEvents", headers=token(tenant))
    assert listed.json()["meta"]["total"] == 0
    bad_limit = await client.get(
        "/api/3/eventTrackingEvents", headers=token(tenant), params={"limit": "many"}
    )
    assert bad_limit.status_code == 422
    assert bad_limit.json()["errors"][0]["source"] == {"parameter": "limit"}


async def test_a_whitelisted_name_never_tracked_is_not_in_the_catalog(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await client.post(
        "/api/3/eventTrackingEvents",
        headers=token(tenant),
        json={"eventTrackingEvent": {"name": "webinar joined"}},
    )
    assert created.status_code == 201
    names = await client.get("/v1/event-names", headers=tenant.headers)
    assert names.json() == {"data": []}
    properties = await client.get(
        "/v1/event-names/webinar joined/properties", headers=tenant.headers
    )
    assert properties.status_code == 404
    whitelist = await client.get("/api/3/eventTrackingEvents", headers=token(tenant))
    assert whitelist.json()["eventTrackingEvents"] == [{"name": "webinar joined"}]

    tracked = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={
            "event": "webinar joined",
            "contact": {"email": "guest@example.com"},
            "properties": {"room": "A"},
        },
    )
    assert tracked.status_code == 201
    names = await client.get("/v1/event-names", headers=tenant.headers)
    assert [(n["name"], n["count"]) for n in names.json()["data"]] == [("webinar joined", 1)]
    properties = await client.get(
        "/v1/event-names/webinar joined/properties", headers=tenant.headers
    )
    assert properties.json() == {"name": "webinar joined", "properties": ["room"]}
