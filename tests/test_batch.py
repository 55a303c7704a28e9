"""POST /v1/batch: each item stored or refused on its own."""

from __future__ import annotations

import httpx
import orjson

from tests.support import Tenant


async def test_valid_items_are_stored_when_others_fail(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    events = [
        {"event": "open", "contact": {"email": "a@example.com"}, "message_id": "b-1"},
        {"event": "", "contact": {"email": "a@example.com"}},
        {"event": "click", "contact": {"email": "a@example.com"}, "message_id": "b-1"},
        {"contact": {"email": "a@example.com"}},
        {"event": "click", "contact": {"id": 424242424}},
        {"event": "click", "contact": {"email": "a@example.com"}, "timestamp": "yesterday"},
        {"event": "click", "contact": {"email": "b@example.com"}},
    ]
    response = await client.post("/v1/batch", headers=tenant.headers, json={"events": events})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(7))
    assert [r["status"] for r in results] == [
        "created",
        "error",
        "duplicate",
        "error",
        "error",
        "error",
        "created",
    ]
    assert results[2]["id"] == results[0]["id"]
    assert results[1]["error"]["field"] == "events.1.event"
    assert results[3]["error"]["field"] == "events.3.event"
    assert results[4]["error"]["code"] == "contact_not_found"
    assert results[5]["error"]["field"] == "events.5.timestamp"
    replay = await client.post("/v1/batch", headers=tenant.headers, json={"events": events[:1]})
    assert replay.json()["results"][0]["status"] == "duplicate"
    assert replay.json()["results"][0]["id"] == results[0]["id"]
    timeline = await client.get(
        f"/v1/contacts/{results[0]['contact_id']}/events", headers=tenant.headers
    )
    assert [e["event"] for e in timeline.json()["data"]] == ["open"]


async def test_more_than_1000_events_or_1_mb_is_413(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    event = {"event": "e", "contact": {"email": "a@example.com"}}
    too_many = await client.post(
        "/v1/batch", headers=tenant.headers, json={"events": [event] * 1001}
    )
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "too_many_events"
    big = {"event": "e", "contact": {"email": "a@example.com"}, "properties": {"p": "x" * 30_000}}
    too_big = await client.post("/v1/batch", headers=tenant.headers, json={"events": [big] * 40})
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"
    exactly = await client.post(
        "/v1/batch", headers=tenant.headers, json={"events": [event] * 1000}
    )
    assert exactly.status_code == 200
    assert {r["status"] for r in exactly.json()["results"]} == {"created"}


async def test_a_wrong_body_is_422_in_the_native_shape_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The route parses its body itself (the well-formed case in one pass): a body that
    is not a batch is refused as FastAPI refuses any other native body."""
    event = {"event": "visit", "contact": {"email": "w@example.com"}}
    cases = {
        b"": (None, "field required"),
        b"{not json": (None, "the body is not valid json"),
        b'["events"]': (None, "input should be a valid dictionary"),
        b'{"events": {"event": "visit"}}': ("events", "input should be a valid list"),
        b'{"events": [], "extra": 1}': ("extra", "extra inputs are not permitted"),
        b'{"events": [1]}': ("events.0", "input should be a valid dictionary"),
        orjson.dumps({"event": [event]}): ("events", "field required"),
    }
    for body, (field, message) in cases.items():
        response = await client.post(
            "/v1/batch",
            headers={**tenant.headers, "Content-Type": "application/json"},
            content=body,
        )
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid", body
        assert error.get("field") == field, (body, error)
        assert message in error["message"].lower(), (body, error)
    contacts = await client.get("/v1/contacts", headers=tenant.headers)
    assert contacts.json()["data"] == []


async def test_a_time_utc_cannot_hold_refuses_only_its_item(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    events = [
        {"event": "x", "contact": {"email": "a@b.co"}, "timestamp": "0001-01-01T00:00:00+14:00"},
        {"event": "y", "contact": {"email": "a@b.co"}, "timestamp": "9999-12-31T23:00:00-02:00"},
        {"event": "z", "contact": {"email": "a@b.co"}},
    ]
    response = await client.post("/v1/batch", headers=tenant.headers, json={"events": events})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["error", "error", "created"]
    assert [r["error"]["field"] for r in results[:2]] == [
        "events.0.timestamp",
        "events.1.timestamp",
    ]
    timeline = await client.get(
        f"/v1/contacts/{results[2]['contact_id']}/events", headers=tenant.headers
    )
    assert [e["event"] for e in timeline.json()["data"]] == ["z"]
