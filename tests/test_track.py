"""POST /v1/track: contacts, idempotency, backfill and limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.support import ManualClock, Tenant, nested_json


async def test_track_creates_the_contact_and_answers_after_commit(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={
            "event": "signup",
            "contact": {"email": "  Ada@Example.COM "},
            "properties": {"plan": "pro"},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["duplicate"] is False
    contact = await client.get(f"/v1/contacts/{body['contact_id']}", headers=tenant.headers)
    assert contact.json()["email"] == "ada@example.com"
    events = await client.get(f"/v1/contacts/{body['contact_id']}/events", headers=tenant.headers)
    [event] = events.json()["data"]
    assert event["id"] == body["id"]
    assert event["event"] == "signup"
    assert event["properties"] == {"plan": "pro"}
    assert event["source"] == "native"


async def test_message_id_replay_stores_nothing_and_returns_the_original(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    event = {"event": "purchase", "contact": {"external_id": "u-1"}, "message_id": "m-1"}
    first = await client.post("/v1/track", headers=tenant.headers, json=event)
    again = await client.post(
        "/v1/track", headers=tenant.headers, json={**event, "value": "changed"}
    )
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["duplicate"] is True
    contact_id = first.json()["contact_id"]
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert len(events.json()["data"]) == 1
    counters = await client.get(f"/v1/contacts/{contact_id}/counters", headers=tenant.headers)
    assert counters.json()["data"][0]["counter"] == 1


async def test_same_message_id_in_two_accounts_is_two_events(
    client: httpx.AsyncClient, tenant: Tenant, new_tenant: object
) -> None:
    other = await new_tenant("Other")  # type: ignore[operator]
    event = {"event": "purchase", "contact": {"external_id": "u-1"}, "message_id": "shared"}
    first = await client.post("/v1/track", headers=tenant.headers, json=event)
    second = await client.post("/v1/track", headers=other.headers, json=event)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


async def test_backfilled_timestamp_keeps_occurred_at_and_records_received_at(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock
) -> None:
    received = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock.set(received)
    response = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={
            "event": "login",
            "contact": {"email": "b@example.com"},
            "timestamp": "2025-12-31T23:30:00+01:00",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["occurred_at"] == "2025-12-31T22:30:00Z"
    epoch = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "login", "contact": {"email": "b@example.com"}, "timestamp": 1700000000},
    )
    assert epoch.json()["occurred_at"] == "2023-11-14T22:13:20Z"
    events = await client.get(
        f"/v1/contacts/{response.json()['contact_id']}/events", headers=tenant.headers
    )
    assert {e["received_at"] for e in events.json()["data"]} == {"2026-03-01T12:00:00Z"}
    # newest occurrence first, whatever the order of arrival
    assert [e["occurred_at"] for e in events.json()["data"]] == [
        "2025-12-31T22:30:00Z",
        "2023-11-14T22:13:20Z",
    ]


async def test_future_timestamp_beyond_ten_minutes_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock
) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock.set(now)
    event = {"event": "login", "contact": {"email": "c@example.com"}}
    near = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={**event, "timestamp": (now + timedelta(minutes=9)).isoformat()},
    )
    far = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={**event, "timestamp": (now + timedelta(minutes=11)).isoformat()},
    )
    assert near.status_code == 201
    assert far.status_code == 422
    assert far.json()["error"]["field"] == "timestamp"


async def test_timestamp_without_offset_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "x", "contact": {"email": "c@example.com"}, "timestamp": "2026-01-01T10:00"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "timestamp"
    assert "offset" in response.json()["error"]["message"]


async def test_limits_name_the_field(client: httpx.AsyncClient, tenant: Tenant) -> None:
    contact = {"email": "d@example.com"}
    cases = [
        ({"event": "", "contact": contact}, "event"),
        ({"event": "x" * 256, "contact": contact}, "event"),
        ({"event": "ok", "contact": contact, "properties": {"blob": "x" * 33_000}}, "properties"),
        (
            {
                "event": "ok",
                "contact": contact,
                "properties": {"a": {"b": {"c": {"d": {"e": {}}}}}},
            },
            "properties",
        ),
        ({"event": "ok", "contact": {"email": "not an email"}}, "contact.email"),
        ({"event": "ok", "contact": {}}, "contact"),
        ({"event": "ok", "contact": contact, "propertes": {}}, "propertes"),
        ({"event": "ok", "contact": contact, "properties": [1, 2]}, "properties"),
    ]
    for body, field in cases:
        response = await client.post("/v1/track", headers=tenant.headers, json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["field"] == field, (body, error)
        assert error["code"] == "invalid"
    too_many = {
        "event": "ok",
        "contact": contact,
        "properties": dict.fromkeys(map(str, range(201))),
    }
    refused = await client.post("/v1/track", headers=tenant.headers, json=too_many)
    assert refused.status_code == 422
    assert refused.json()["error"] == {
        "code": "invalid",
        "field": "properties",
        "message": "properties must have at most 200 keys",
    }
    deep_enough = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    ok = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "x" * 255, "contact": contact, "properties": deep_enough},
    )
    assert ok.status_code == 201, ok.text
    at_most = {"event": "ok", "contact": contact, "properties": dict.fromkeys(map(str, range(200)))}
    assert (await client.post("/v1/track", headers=tenant.headers, json=at_most)).status_code == 201


async def test_malformed_json_is_a_clear_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/track",
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=b'{"event": "x",',
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "the body is not valid JSON"


async def test_a_body_that_does_not_say_json_is_told_to_say_so(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = b'{"event": "signup", "contact": {"email": "curl@example.com"}}'
    batch = b'{"events": [{"event": "signup", "contact": {"email": "curl@example.com"}}]}'
    # curl -d sends application/x-www-form-urlencoded
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = dict(tenant.headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        for path, content in (("/v1/track", body), ("/v1/batch", batch), ("/v1/lists", b"{}")):
            response = await client.post(path, headers=headers, content=content)
            assert response.status_code == 415, (path, content_type, response.text)
            error = response.json()["error"]
            assert error["code"] == "unsupported_media_type"
            assert "must be JSON" in error["message"]
            assert "Content-Type: application/json" in error["message"]
    stored = await client.get("/v1/contacts", headers=tenant.headers)
    assert stored.json()["data"] == []

    json_types = ("application/json", "application/json; charset=utf-8", "application/x+json")
    for content_type in json_types:
        headers = {**tenant.headers, "Content-Type": content_type}
        sent = await client.post("/v1/track", headers=headers, content=body)
        assert sent.status_code == 201, (content_type, sent.text)
    # routes that take no body need no Content-Type
    assert (await client.get("/v1/account", headers=tenant.headers)).status_code == 200


async def test_deeply_nested_properties_are_a_422_and_refuse_only_their_batch_event(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    contact = '"contact":{"email":"deep@example.com"}'
    for depth in (40, 300, 1000, 3000):
        body = f'{{"event":"deep",{contact},"properties":{nested_json(depth)}}}'
        response = await client.post("/v1/track", headers=headers, content=body)
        assert response.status_code == 422, (depth, response.text)
        assert response.json()["error"]["code"] == "invalid"
        assert "must be nested at most" in response.json()["error"]["message"]
    batch = (
        f'{{"events":[{{"event":"deep",{contact},"properties":{nested_json(1000)}}},'
        f'{{"event":"shallow",{contact},"properties":{{"plan":"pro"}}}}]}}'
    )
    response = await client.post("/v1/batch", headers=headers, content=batch)
    assert response.status_code == 200, response.text
    deep, shallow = response.json()["results"]
    assert deep["status"] == "error"
    assert deep["error"]["message"] == "events.0.properties must be nested at most 5 deep"
    assert shallow["status"] == "created"


async def test_unknown_contact_id_is_404_and_anonymous_id_creates_a_contact(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    missing = await client.post(
        "/v1/track", headers=tenant.headers, json={"event": "x", "contact": {"id": 987654321}}
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "contact_not_found"
    anonymous = await client.post(
        "/v1/track", headers=tenant.headers, json={"event": "x", "contact": {"anonymous_id": "v-1"}}
    )
    assert anonymous.status_code == 201
    again = await client.post(
        "/v1/track", headers=tenant.headers, json={"event": "y", "contact": {"anonymous_id": "v-1"}}
    )
    assert again.json()["contact_id"] == anonymous.json()["contact_id"]
    by_id = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "z", "contact": {"id": anonymous.json()["contact_id"]}},
    )
    assert by_id.status_code == 201
    assert by_id.json()["contact_id"] == anonymous.json()["contact_id"]


async def test_tracking_switched_off_refuses_events(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    off = await client.patch(
        "/v1/account", headers=tenant.headers, json={"tracking_enabled": False}
    )
    assert off.json()["tracking_enabled"] is False
    refused = await client.post(
        "/v1/track", headers=tenant.headers, json={"event": "x", "contact": {"email": "e@x.io"}}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "tracking_disabled"
    await client.patch("/v1/account", headers=tenant.headers, json={"tracking_enabled": True})
    accepted = await client.post(
        "/v1/track", headers=tenant.headers, json={"event": "x", "contact": {"email": "e@x.io"}}
    )
    assert accepted.status_code == 201


async def test_catalog_counts_names_and_records_properties(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for properties in ({"sku": "a"}, {"sku": "b", "qty": 2}, None):
        body = {"event": "purchase", "contact": {"email": "f@x.io"}, "properties": properties}
        assert (
            await client.post("/v1/track", headers=tenant.headers, json=body)
        ).status_code == 201
    names = (await client.get("/v1/event-names", headers=tenant.headers)).json()["data"]
    assert [(n["name"], n["count"]) for n in names] == [("purchase", 3)]
    props = await client.get("/v1/event-names/purchase/properties", headers=tenant.headers)
    assert props.json() == {"name": "purchase", "properties": ["qty", "sku"]}
    unknown = await client.get("/v1/event-names/never/properties", headers=tenant.headers)
    assert unknown.status_code == 404


async def test_a_time_utc_cannot_hold_is_a_422_on_its_field_not_a_404(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    event = {"event": "x", "contact": {"email": "a@b.co"}}
    # before the year 1 in UTC
    early = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={**event, "timestamp": "0001-01-01T00:00:00+14:00"},
    )
    assert early.status_code == 422, early.text
    assert early.json()["error"]["field"] == "timestamp"
    assert "out of range" in early.json()["error"]["message"]
    # the earliest UTC holds is taken, however long ago
    oldest = await client.post(
        "/v1/track", headers=tenant.headers, json={**event, "timestamp": "0001-01-01T00:00:00Z"}
    )
    assert oldest.status_code == 201, oldest.text
    assert oldest.json()["occurred_at"].startswith("0001-01-01T00:00:00")
    contact_id = oldest.json()["contact_id"]
    for param in ("since", "until"):
        listed = await client.get(
            f"/v1/contacts/{contact_id}/events",
            headers=tenant.headers,
            params={param: "0001-01-01T00:00:00+14:00"},
        )
        assert listed.status_code == 422, listed.text
        assert listed.json()["error"]["field"] == param
    since = await client.get(
        f"/v1/contacts/{contact_id}/events",
        headers=tenant.headers,
        params={"since": "0001-01-01T00:00:00Z"},
    )
    assert [e["event"] for e in since.json()["data"]] == ["x"]


async def test_ids_beyond_64_bits_name_nothing_in_every_field(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    huge = 2**63
    contact = await client.get(f"/v1/contacts/{huge}", headers=tenant.headers)
    assert (contact.status_code, contact.json()["error"]["code"]) == (404, "contact_not_found")
    member = await client.put(f"/v1/lists/{huge}/contacts/1", headers=tenant.headers)
    assert (member.status_code, member.json()["error"]["code"]) == (404, "list_not_found")
    for conditions, actions, field in (
        ({}, [{"type": "add_to_list", "list_id": huge}], "actions.0.list_id"),
        ({"segment_id": huge}, [{"type": "add_tag", "tag": "t"}], "conditions.segment_id"),
    ):
        automation = await client.post(
            "/v1/automations",
            headers=tenant.headers,
            json={
                "name": field,
                "trigger": {"event": "x"},
                "conditions": conditions,
                "actions": actions,
            },
        )
        assert automation.status_code == 422, automation.text
        assert automation.json()["error"]["field"] == field
