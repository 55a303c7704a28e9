"""Segment's HTTP tracking API at /segment/v1, as Segment's docs and libraries speak it:
auth, bodies, limits, field mapping, timestamps, identity, batches."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.support import ManualClock, Tenant, nested_json
from tests.test_publishable_keys import publishable_key
from trackbook.services import Services

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SITE = "https://www.example.com"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def contact_of(client: httpx.AsyncClient, tenant: Tenant, email: str) -> dict[str, Any]:
    found = await client.get("/v1/contacts", params={"email": email}, headers=tenant.headers)
    assert found.json()["data"], email
    contact: dict[str, Any] = found.json()["data"][0]
    return contact


async def timeline(client: httpx.AsyncClient, tenant: Tenant, contact_id: int) -> list[Any]:
    events = await client.get(
        f"/v1/contacts/{contact_id}/events", params={"limit": 1000}, headers=tenant.headers
    )
    data: list[Any] = events.json()["data"]
    return data


async def dropped_of(client: httpx.AsyncClient, tenant: Tenant) -> list[Any]:
    found = await client.get("/v1/dropped-events", headers=tenant.headers)
    data: list[Any] = found.json()["data"]
    return data


async def test_track_with_basic_auth_is_stored_with_its_properties_and_context(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sent = await client.post(
        "/segment/v1/track",
        headers=basic(tenant.key),
        json={
            "userId": "user-1",
            "event": "Order Completed",
            "properties": {"total": 49.9, "sku": "A-1"},
            "context": {"traits": {"email": "buyer@example.com"}, "ip": "192.0.2.1"},
            "timestamp": "2026-11-20T10:00:00Z",
            "messageId": "order-1",
        },
    )
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"success": True}
    contact = await contact_of(client, tenant, "buyer@example.com")
    assert contact["external_id"] == "user-1"
    [event] = await timeline(client, tenant, contact["id"])
    assert event["event"] == "Order Completed"
    assert event["source"] == "segment"
    assert event["message_id"] == "order-1"
    assert event["occurred_at"] == "2026-11-20T10:00:00Z"
    assert event["properties"]["total"] == 49.9
    assert event["properties"]["$context"]["ip"] == "192.0.2.1"


async def test_the_same_message_id_twice_is_stored_once(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    message = {"userId": "twice", "event": "Clicked", "messageId": "dup-1"}
    for _ in range(2):
        assert (
            await client.post("/segment/v1/track", headers=basic(tenant.key), json=message)
        ).status_code == 200
    batch = {"batch": [{**message, "type": "track"}, {**message, "type": "track"}]}
    assert (
        await client.post("/segment/v1/batch", headers=basic(tenant.key), json=batch)
    ).status_code == 200
    found = await client.get("/v1/contacts", headers=tenant.headers, params={"limit": 1000})
    [contact] = [c for c in found.json()["data"] if c["external_id"] == "twice"]
    assert len(await timeline(client, tenant, contact["id"])) == 1


async def test_write_key_in_a_text_plain_body_as_browsers_beacon_it(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {"writeKey": tenant.key, "userId": "beacon-1", "event": "Beaconed"}
    sent = await client.post(
        "/segment/v1/t",
        content=orjson.dumps(body),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert sent.status_code == 200, sent.text
    # a Basic header takes precedence over the body's writeKey
    wrong = await client.post(
        "/segment/v1/t", headers=basic("tb_live_wrong"), json={**body, "event": "Not stored"}
    )
    assert wrong.status_code == 401


async def test_gzip_bodies_are_inflated_and_a_gzip_bomb_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {"batch": [{"type": "track", "userId": "gz-1", "event": "Zipped"}]}
    sent = await client.post(
        "/segment/v1/batch",
        headers={**basic(tenant.key), "Content-Encoding": "gzip"},
        content=gzip.compress(orjson.dumps(body)),
    )
    assert sent.status_code == 200, sent.text
    bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
    assert len(bomb) < 100_000
    refused = await client.post(
        "/segment/v1/batch",
        headers={**basic(tenant.key), "Content-Encoding": "gzip"},
        content=bomb,
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "payload_too_large"
    broken = await client.post(
        "/segment/v1/batch",
        headers={**basic(tenant.key), "Content-Encoding": "gzip"},
        content=b"not gzip at all",
    )
    assert broken.status_code == 400
    assert set(broken.json()) == {"code", "message"}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"userId": "u", "event": "e"}),
        ({}, {"writeKey": "tb_live_nothing", "userId": "u", "event": "e"}),
        (basic("nope"), {"userId": "u", "event": "e"}),
    ],
)
async def test_a_missing_or_bad_key_is_a_segment_shaped_401(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> None:
    answer = await client.post("/segment/v1/track", headers=headers, json=body)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    assert "writeKey" in answer.json()["message"]


async def test_beyond_segments_size_limits(client: httpx.AsyncClient, tenant: Tenant) -> None:
    big = {"userId": "big", "event": "Big", "properties": {"blob": "x" * (33 * 1024)}}
    single = await client.post("/segment/v1/track", headers=basic(tenant.key), json=big)
    assert single.status_code == 400
    assert single.json()["code"] == "payload_too_large"
    huge = {"batch": [{**big, "type": "track", "properties": {"n": "y" * 30_000}}] * 18}
    batch = await client.post("/segment/v1/batch", headers=basic(tenant.key), json=huge)
    assert batch.status_code == 400
    assert "500 KB" in batch.json()["message"]
    # in a batch, one message over 32 KB is dropped and the others are stored
    mixed = {
        "batch": [
            {**big, "type": "track", "messageId": "too-big"},
            {"type": "track", "userId": "big", "event": "Small"},
        ]
    }
    accepted = await client.post("/segment/v1/batch", headers=basic(tenant.key), json=mixed)
    assert accepted.status_code == 200
    drops = await dropped_of(client, tenant)
    assert drops[0]["reason"] == "too_large"
    assert drops[0]["payload"]["message"] == {"messageId": "too-big"}


async def test_a_batch_sent_at_that_is_no_time_is_a_400(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for sent_at in ({}, [], "yesterday", True):
        body = {"batch": [{"type": "track", "userId": "u", "event": "e"}], "sentAt": sent_at}
        answer = await client.post("/segment/v1/batch", headers=basic(tenant.key), json=body)
        assert answer.status_code == 400, (sent_at, answer.text)
        assert answer.json()["code"] == "invalid_request"
        assert "sentAt" in answer.json()["message"]


async def test_more_than_200_properties_are_refused_or_dropped(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    wide = {"userId": "wide", "event": "Wide", "properties": {f"p{i}": i for i in range(201)}}
    single = await client.post("/segment/v1/track", headers=basic(tenant.key), json=wide)
    assert (single.status_code, single.json()) == (
        400,
        {"code": "invalid_request", "message": "properties must have at most 200 keys"},
    )
    batch = {
        "batch": [
            {**wide, "type": "track", "messageId": "too-wide"},
            {"type": "track", "userId": "wide", "event": "Narrow"},
        ]
    }
    accepted = await client.post("/segment/v1/batch", headers=basic(tenant.key), json=batch)
    assert accepted.status_code == 200
    assert [
        drop["payload"]["message"]["messageId"] for drop in await dropped_of(client, tenant)
    ] == ["too-wide"]
    # with no context, 200 properties are 200 keys; Segment's context would be one more
    at_most = {"userId": "wide", "event": "Wide", "properties": {f"p{i}": i for i in range(200)}}
    stored = await client.post("/segment/v1/track", headers=basic(tenant.key), json=at_most)
    assert stored.status_code == 200, stored.text


@pytest.mark.parametrize(
    ("long_path", "short_path", "body"),
    [
        ("/segment/v1/track", "/segment/v1/t", {"event": "Short"}),
        ("/segment/v1/page", "/segment/v1/p", {"name": "Home"}),
        ("/segment/v1/screen", "/segment/v1/s", {"name": "Settings"}),
        ("/segment/v1/identify", "/segment/v1/i", {"traits": {"email": "short@example.com"}}),
        ("/segment/v1/group", "/segment/v1/g", {"groupId": "acme"}),
        ("/segment/v1/alias", "/segment/v1/a", {"previousId": "anon-alias"}),
    ],
)
async def test_every_call_has_its_short_route(
    client: httpx.AsyncClient,
    tenant: Tenant,
    long_path: str,
    short_path: str,
    body: dict[str, Any],
) -> None:
    for path in (long_path, short_path):
        answer = await client.post(
            path, headers=basic(tenant.key), json={"userId": "short-user", **body}
        )
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json() == {"success": True}
    batched = await client.post(
        "/segment/v1/b",
        headers=basic(tenant.key),
        json={"batch": [{"type": "track", "userId": "short-user", "event": "Via b"}]},
    )
    assert batched.status_code == 200


async def test_page_and_screen_record_views_with_url_referrer_and_utm(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    page = await client.post(
        "/segment/v1/page",
        headers=basic(tenant.key),
        json={
            "userId": "reader-1",
            "name": "Pricing",
            "properties": {"title": "Pricing - Example"},
            "context": {
                "traits": {"email": "reader@example.com"},
                "page": {
                    "url": "https://www.example.com/pricing?utm_source=news",
                    "path": "/pricing",
                    "referrer": "https://news.example/",
                    "search": "?utm_source=news",
                    "title": "ignored: properties win",
                },
                "campaign": {"source": "news", "medium": "email", "name": "launch"},
            },
        },
    )
    assert page.status_code == 200, page.text
    screen = await client.post(
        "/segment/v1/screen",
        headers=basic(tenant.key),
        json={"userId": "reader-1", "name": "Settings", "properties": {"tab": "billing"}},
    )
    assert screen.status_code == 200
    contact = await contact_of(client, tenant, "reader@example.com")
    screen_event, page_event = await timeline(client, tenant, contact["id"])
    assert page_event["event"] == "Page Viewed"
    assert page_event["title"] == "Pricing"
    properties = page_event["properties"]
    assert properties["url"] == "https://www.example.com/pricing?utm_source=news"
    assert properties["path"] == "/pricing"
    assert properties["referrer"] == "https://news.example/"
    assert properties["search"] == "?utm_source=news"
    assert properties["title"] == "Pricing - Example"
    assert properties["utm_source"] == "news"
    assert properties["utm_medium"] == "email"
    assert properties["utm_campaign"] == "launch"
    assert screen_event["event"] == "Screen Viewed"
    assert screen_event["title"] == "Settings"
    assert screen_event["properties"] == {"tab": "billing", "name": "Settings"}


async def test_timestamps_are_corrected_for_the_senders_clock_as_segment_documents(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock
) -> None:
    clock.set(NOW)
    # the device clock runs 1 hour fast: it says it sent at 13:00 what happened at 12:55
    skewed = {
        "type": "track",
        "userId": "clocks",
        "event": "Skewed",
        "originalTimestamp": "2026-11-23T12:55:00Z",
        "sentAt": "2026-11-23T13:00:00Z",
    }
    batch = {
        "sentAt": "2026-11-23T13:00:00Z",
        "batch": [
            skewed,
            {**skewed, "event": "Batch sentAt", "sentAt": None},
            {**skewed, "event": "Explicit", "timestamp": "2026-11-22T08:00:00+01:00"},
            {"type": "track", "userId": "clocks", "event": "Received"},
        ],
    }
    sent = await client.post("/segment/v1/batch", headers=basic(tenant.key), json=batch)
    assert sent.status_code == 200, sent.text
    # without sentAt there is no skew to correct: originalTimestamp is taken as it is
    alone = {"userId": "clocks", "event": "Original only", "originalTimestamp": "2026-11-23T11:30Z"}
    sent = await client.post("/segment/v1/track", headers=basic(tenant.key), json=alone)
    assert sent.status_code == 200, sent.text
    found = await client.get("/v1/contacts", headers=tenant.headers, params={"limit": 1000})
    [contact] = [c for c in found.json()["data"] if c["external_id"] == "clocks"]
    times = {e["event"]: e["occurred_at"] for e in await timeline(client, tenant, contact["id"])}
    expected = (NOW - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert times["Skewed"] == expected
    assert times["Batch sentAt"] == expected
    assert times["Explicit"] == "2026-11-22T07:00:00Z"
    assert times["Received"] == NOW.isoformat().replace("+00:00", "Z")
    assert times["Original only"] == "2026-11-23T11:30:00Z"


async def test_a_time_out_of_range_once_corrected_is_a_400_and_in_a_batch_drops_only_itself(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock
) -> None:
    clock.set(NOW)
    far = {
        "type": "track",
        "userId": "far",
        "event": "Far",
        "messageId": "far-1",
        "originalTimestamp": "0001-01-01T00:00:00Z",
        "sentAt": "9999-12-31T00:00:00Z",
    }
    alone = await client.post("/segment/v1/track", headers=basic(tenant.key), json=far)
    assert alone.status_code == 400, alone.text
    assert alone.json()["code"] == "invalid_request"
    assert "originalTimestamp" in alone.json()["message"]
    early = {**far, "messageId": "far-2", "sentAt": None, "timestamp": "0001-01-01T00:00+14:00"}
    good = {"type": "track", "userId": "far", "event": "Good", "messageId": "good-1"}
    sent = await client.post(
        "/segment/v1/batch", headers=basic(tenant.key), json={"batch": [far, early, good]}
    )
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"success": True}
    found = await client.get("/v1/contacts", headers=tenant.headers, params={"limit": 1000})
    [contact] = [c for c in found.json()["data"] if c["external_id"] == "far"]
    assert [e["message_id"] for e in await timeline(client, tenant, contact["id"])] == ["good-1"]
    drops = await dropped_of(client, tenant)
    assert sorted(d["payload"]["message"]["messageId"] for d in drops) == ["far-1", "far-2"]
    assert {d["reason"] for d in drops} == {"invalid"}


async def test_identify_merges_the_anonymous_visitor_into_the_contact_with_that_email(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for event in ("Viewed Home", "Viewed Pricing"):
        sent = await client.post(
            "/segment/v1/track",
            headers=basic(tenant.key),
            json={"anonymousId": "visitor-merge", "event": event},
        )
        assert sent.status_code == 200
    known = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "Subscribed", "contact": {"email": "merge@example.com"}},
    )
    assert known.status_code == 201
    identified = await client.post(
        "/segment/v1/identify",
        headers=basic(tenant.key),
        json={
            "anonymousId": "visitor-merge",
            "traits": {"email": "Merge@Example.com", "firstName": "Grace", "lastName": "Hopper"},
        },
    )
    assert identified.status_code == 200
    later = await client.post(
        "/segment/v1/track",
        headers=basic(tenant.key),
        json={"anonymousId": "visitor-merge", "event": "Viewed Docs"},
    )
    assert later.status_code == 200
    contact = await contact_of(client, tenant, "merge@example.com")
    assert (contact["first_name"], contact["last_name"]) == ("Grace", "Hopper")
    names = sorted(event["event"] for event in await timeline(client, tenant, contact["id"]))
    assert names == ["Subscribed", "Viewed Docs", "Viewed Home", "Viewed Pricing"]
    details = await client.get(f"/v1/contacts/{contact['id']}", headers=tenant.headers)
    assert "visitor-merge" in details.json()["aliases"]


async def test_alias_links_the_previous_id_and_group_is_dropped_with_a_reason(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await client.post(
        "/segment/v1/track",
        headers=basic(tenant.key),
        json={"anonymousId": "before-signup", "event": "Browsed"},
    )
    aliased = await client.post(
        "/segment/v1/alias",
        headers=basic(tenant.key),
        json={"previousId": "before-signup", "userId": "account-77"},
    )
    assert aliased.status_code == 200
    grouped = await client.post(
        "/segment/v1/group",
        headers=basic(tenant.key),
        json={"userId": "account-77", "groupId": "acme", "traits": {"plan": "team"}},
    )
    assert grouped.status_code == 200
    found = await client.get("/v1/contacts", headers=tenant.headers, params={"limit": 1000})
    [contact] = [c for c in found.json()["data"] if c["external_id"] == "account-77"]
    assert [e["event"] for e in await timeline(client, tenant, contact["id"])] == ["Browsed"]
    [group] = [d for d in await dropped_of(client, tenant) if d["reason"] == "not_supported"]
    assert group["source"] == "segment"
    assert group["payload"]["message"]["groupId"] == "acme"


async def test_an_identify_that_would_join_two_identified_contacts_is_dropped(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    first = {"anonymousId": "shared-laptop", "traits": {"email": "first@example.com"}}
    second = {"anonymousId": "shared-laptop", "traits": {"email": "second@example.com"}}
    for body in (first, second):
        answer = await client.post("/segment/v1/identify", headers=basic(tenant.key), json=body)
        assert answer.status_code == 200
    drops = await dropped_of(client, tenant)
    assert drops[0]["reason"] == "identity_conflict"
    await contact_of(client, tenant, "second@example.com")


async def test_a_bad_single_call_is_a_400_and_a_bad_message_in_a_batch_is_dropped(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for body, field in (
        ({"event": "No one"}, "userId"),
        ({"userId": "u"}, "event"),
        ({"userId": "u", "event": "e", "timestamp": "yesterday"}, "timestamp"),
        ({"userId": "u", "event": "e", "context": {"traits": {"email": "nope"}}}, "email"),
        ({"userId": "u", "event": "e", "properties": []}, "properties"),
    ):
        answer = await client.post("/segment/v1/track", headers=basic(tenant.key), json=body)
        assert answer.status_code == 400, body
        assert answer.json()["code"] == "invalid_request"
        assert field in answer.json()["message"]
    for content in (b"{not json", b"[1, 2]"):
        malformed = await client.post(
            "/segment/v1/track", headers={**basic(tenant.key), "Content-Type": "text/plain"},
            content=content,
        )  # fmt: skip
        assert malformed.status_code == 400
    batch = {
        "batch": [
            {"type": "track", "userId": "batcher", "event": "Good", "messageId": "good-1"},
            {"type": "track", "userId": "batcher", "messageId": "bad-1"},
            {"type": "launch", "userId": "batcher"},
            "not a message",
            {"type": "track", "userId": "nul\u0000", "event": "Unstorable"},
        ]
    }
    answer = await client.post("/segment/v1/batch", headers=basic(tenant.key), json=batch)
    assert answer.status_code == 200
    assert answer.json() == {"success": True}
    drops = [d for d in await dropped_of(client, tenant) if d["reason"] == "invalid"]
    errors = sorted(d["payload"]["error"] for d in drops[:4])
    assert errors[0] == "batch.1.event is required for a track call"
    assert errors[1].startswith("batch.2.type must be one of")
    assert errors[2].startswith("batch.3.")
    assert errors[3].startswith("batch.4.userId must not contain NUL")
    contact = await client.get("/v1/contacts", headers=tenant.headers, params={"limit": 1000})
    [batcher] = [c for c in contact.json()["data"] if c["external_id"] == "batcher"]
    assert [e["event"] for e in await timeline(client, tenant, batcher["id"])] == ["Good"]
    not_a_batch = await client.post(
        "/segment/v1/batch", headers=basic(tenant.key), json={"batch": "x"}
    )
    assert not_a_batch.status_code == 400


async def test_a_deeply_nested_call_is_a_400_and_in_a_batch_drops_only_itself(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {**basic(tenant.key), "Content-Type": "application/json"}
    for depth in (300, 1000):
        body = f'{{"userId":"deep","event":"Deep","properties":{nested_json(depth)}}}'
        answer = await client.post("/segment/v1/track", headers=headers, content=body)
        assert answer.status_code == 400, answer.text
        assert answer.json() == {
            "code": "invalid_request",
            "message": "body must be nested at most 32 deep",
        }
    good = '{"type":"track","userId":"nester","event":"Good","messageId":"good-%d"}'
    deep = (
        f'{{"type":"track","userId":"nester","event":"Deep","messageId":"deep-1",'
        f'"properties":{nested_json(300)}}}'
    )
    batch = f'{{"batch":[{good % 1},{deep},{good % 2}]}}'
    answer = await client.post("/segment/v1/batch", headers=headers, content=batch)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True}
    contacts = await client.get("/v1/contacts", headers=tenant.headers, params={"limit": 1000})
    [nester] = [c for c in contacts.json()["data"] if c["external_id"] == "nester"]
    stored = await timeline(client, tenant, nester["id"])
    assert sorted(e["message_id"] for e in stored) == ["good-1", "good-2"]
    [drop] = await dropped_of(client, tenant)
    assert drop["reason"] == "invalid"
    assert drop["payload"] == {
        "message": {"messageId": "deep-1"},
        "error": "batch.1 must be nested at most 32 deep",
    }


async def test_a_batch_nested_beyond_orjsons_limit_is_refused_whole(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The body is parsed whole before any message is looked at, by orjson, which stops
    at 1,024 levels (no kept library reads deeper JSON without recursion): a message
    that takes the body beyond that refuses its batch as malformed JSON, a 400 that
    Segment's libraries do not retry; up to it, only the message is dropped."""
    headers = {**basic(tenant.key), "Content-Type": "application/json"}
    good = '{"type":"track","userId":"nester","event":"Good","messageId":"%s"}'
    # the batch's object and list and the message's object: 3 levels before its properties
    for depth, status in ((1021, 200), (1022, 400)):
        deep = (
            f'{{"type":"track","userId":"nester","event":"Deep","messageId":"deep-{depth}",'
            f'"properties":{nested_json(depth)}}}'
        )
        batch = f'{{"batch":[{good % f"before-{depth}"},{deep},{good % f"after-{depth}"}]}}'
        answer = await client.post("/segment/v1/batch", headers=headers, content=batch)
        assert answer.status_code == status, answer.text
    assert answer.json() == {"code": "invalid_request", "message": "the body is not valid JSON"}
    contacts = await client.get("/v1/contacts", headers=tenant.headers, params={"limit": 1000})
    [nester] = [c for c in contacts.json()["data"] if c["external_id"] == "nester"]
    stored = await timeline(client, tenant, nester["id"])
    assert sorted(e["message_id"] for e in stored) == ["after-1021", "before-1021"]
    [drop] = await dropped_of(client, tenant)
    assert drop["payload"]["message"] == {"messageId": "deep-1021"}


async def test_tracking_switched_off_drops_with_the_reason(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    off = await client.patch(
        "/v1/account", headers=tenant.headers, json={"tracking_enabled": False}
    )
    assert off.status_code == 200
    answer = await client.post(
        "/segment/v1/track", headers=basic(tenant.key), json={"userId": "off", "event": "Lost"}
    )
    assert answer.status_code == 200
    assert (await dropped_of(client, tenant))[0]["reason"] == "tracking_disabled"


async def test_the_browser_trackers_beacon_with_a_publishable_key(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    """Exactly what /t.js sends: a text/plain batch with the key in the body, from the
    site's origin; then an identify merges the page views into the contact."""
    key = await publishable_key(services, tenant.id, SITE)
    context = {
        "page": {
            "url": "https://www.example.com/?utm_source=ads",
            "path": "/",
            "referrer": "",
            "title": "Home",
            "search": "?utm_source=ads",
        },
        "campaign": {"source": "ads"},
        "userAgent": "Mozilla/5.0",
    }
    views = {
        "batch": [
            {
                "type": "page",
                "messageId": "beacon-page-1",
                "anonymousId": "tjs-visitor",
                "properties": {},
                "context": context,
                "originalTimestamp": "2026-11-23T11:59:58.000Z",
            },
            {
                "type": "track",
                "messageId": "beacon-track-1",
                "anonymousId": "tjs-visitor",
                "event": "Clicked CTA",
                "properties": {"label": "Start"},
                "context": context,
                "originalTimestamp": "2026-11-23T11:59:59.000Z",
            },
        ],
        "sentAt": "2026-11-23T12:00:00.000Z",
        "writeKey": key,
    }
    headers = {"Content-Type": "text/plain;charset=UTF-8", "Origin": SITE}
    sent = await client.post("/segment/v1/batch", content=orjson.dumps(views), headers=headers)
    assert sent.status_code == 200, sent.text
    assert sent.headers["access-control-allow-origin"] == SITE
    identify = {
        "batch": [
            {
                "type": "identify",
                "messageId": "beacon-identify-1",
                "anonymousId": "tjs-visitor",
                "traits": {"email": "tjs@example.com"},
                "context": context,
                "originalTimestamp": "2026-11-23T12:00:01.000Z",
            }
        ],
        "sentAt": "2026-11-23T12:00:01.000Z",
        "writeKey": key,
    }
    sent = await client.post("/segment/v1/batch", content=orjson.dumps(identify), headers=headers)
    assert sent.status_code == 200
    contact = await contact_of(client, tenant, "tjs@example.com")
    events = await timeline(client, tenant, contact["id"])
    assert [e["event"] for e in events] == ["Clicked CTA", "Page Viewed"]
    assert events[1]["properties"]["utm_source"] == "ads"
    # a retried beacon stores nothing twice
    again = await client.post("/segment/v1/batch", content=orjson.dumps(views), headers=headers)
    assert again.status_code == 200
    assert len(await timeline(client, tenant, contact["id"])) == 2


async def test_a_publishable_key_from_another_origin_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    key = await publishable_key(services, tenant.id, SITE)
    body = {
        "writeKey": key,
        "batch": [
            {"type": "identify", "anonymousId": "x", "traits": {"email": "evil@example.com"}}
        ],
    }
    refused = await client.post(
        "/segment/v1/batch",
        content=orjson.dumps(body),
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert "access-control-allow-origin" not in refused.headers
    found = await client.get(
        "/v1/contacts", params={"email": "evil@example.com"}, headers=tenant.headers
    )
    assert found.json()["data"] == []


async def test_segment_errors_keep_their_shape_for_unknown_routes_and_methods(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    missing = await client.post("/segment/v1/nothing", headers=basic(tenant.key), json={})
    assert missing.status_code == 404
    assert set(missing.json()) == {"code", "message"}
    wrong_method = await client.get("/segment/v1/track")
    assert wrong_method.status_code == 405
    assert set(wrong_method.json()) == {"code", "message"}


async def test_traits_of_an_anonymous_visitor_are_dropped_with_a_reason(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    identified = await client.post(
        "/segment/v1/identify",
        headers=basic(tenant.key),
        json={"anonymousId": "nobody-yet", "traits": {"plan": "free"}},
    )
    assert (identified.status_code, identified.json()) == (200, {"success": True})
    [kept] = [d for d in await dropped_of(client, tenant) if d["reason"] == "not_supported"]
    assert kept["payload"]["message"]["anonymousId"] == "nobody-yet"
