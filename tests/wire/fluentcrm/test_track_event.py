"""POST track-event as the seed documents it and the captures record it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx

from tests.support import ManualClock, Tenant
from tests.wire.fluentcrm.conftest import BASE, Subscribe, basic

TRACK = f"{BASE}/subscribers/track-event"


async def test_seed_rest_request_is_tracked(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    await subscribe("john@example.com")
    response = await client.post(
        TRACK,
        auth=basic(tenant),
        json={
            "event_key": "testing_from_rest_api",
            "title": "Testing From REST API",
            "email": "john@example.com",
            "value": "This is my event value with plain text",
            "provider": "woocommerce",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Event has been tracked"
    assert isinstance(body["id"], int)


async def test_same_key_and_title_bump_one_counter_and_keep_its_id(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe, clock: ManualClock
) -> None:
    contact_id = await subscribe("capture@example.com", first_name="Capture")
    clock.set(datetime(2026, 11, 23, 7, 18, 24, tzinfo=UTC))
    ids = []
    for n in (1, 2, 3):
        response = await client.post(
            TRACK,
            auth=basic(tenant),
            json={
                "email": "capture@example.com",
                "event_key": "page_view",
                "title": "Viewed pricing",
                "value": f"visit-{n}",
            },
        )
        ids.append(response.json()["id"])
        clock.set(datetime(2026, 11, 23, 7, 18, 25, tzinfo=UTC))
    other = await client.post(
        TRACK,
        auth=basic(tenant),
        json={
            "email": "capture@example.com",
            "event_key": "signup",
            "title": "Signed up",
            "value": "plan=pro",
            "provider": "app",
        },
    )
    assert ids[0] == ids[1] == ids[2]
    assert other.json()["id"] != ids[0]
    listing = await client.get(
        f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
    )
    data = listing.json()["events"]["data"]
    assert [(d["event_key"], d["counter"], d["value"], d["provider"]) for d in data] == [
        ("signup", "1", "plan=pro", "app"),
        ("page_view", "3", "visit-3", "custom"),
    ]
    assert data[1]["created_at"] == "2026-11-23 07:18:24"
    assert data[1]["updated_at"] == "2026-11-23 07:18:25"


async def test_repeatable_false_adds_rows_and_php_truthiness_decides(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("rep@example.com")
    event = {"email": "rep@example.com", "event_key": "page_view", "title": "Viewed pricing"}
    first = (await client.post(TRACK, auth=basic(tenant), json=event)).json()["id"]
    separate = await client.post(TRACK, auth=basic(tenant), json={**event, "repeatable": False})
    string_false = await client.post(
        TRACK, auth=basic(tenant), json={**event, "repeatable": "false"}
    )
    form_zero = await client.post(
        TRACK, auth=basic(tenant), data={**event, "repeatable": "0", "value": "v2"}
    )
    assert separate.json()["id"] not in (first, form_zero.json()["id"])
    # a non-empty string is true in PHP: the shared counter again (capture 16)
    assert string_false.json()["id"] == first
    listing = await client.get(
        f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
    )
    counters = sorted(int(d["counter"]) for d in listing.json()["events"]["data"])
    assert counters == [1, 1, 2]


async def test_form_and_query_input(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("form@example.com")
    form = await client.post(
        TRACK,
        auth=basic(tenant),
        data={
            "email": "form@example.com",
            "event_key": "form_event",
            "title": "Form title",
            "value": "v1",
        },
    )
    query = await client.post(
        TRACK,
        auth=basic(tenant),
        params={
            "subscriber_id": str(contact_id),
            "event_key": "query_event",
            "title": "From query",
        },
    )
    assert form.status_code == query.status_code == 200, (form.text, query.text)
    listing = await client.get(
        f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
    )
    assert {d["event_key"] for d in listing.json()["events"]["data"]} == {
        "form_event",
        "query_event",
    }


async def test_html_is_stripped_long_keys_cut_and_email_case_ignored(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("case@example.com")
    html = await client.post(
        TRACK,
        auth=basic(tenant),
        json={
            "email": "CASE@EXAMPLE.COM",
            "event_key": "<b>html</b>_key",
            "title": "<i>Title</i> here",
        },
    )
    long = await client.post(
        TRACK,
        auth=basic(tenant),
        json={"email": "case@example.com", "event_key": "k" * 300, "title": "t" * 200},
    )
    assert html.status_code == long.status_code == 200
    listing = await client.get(
        f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
    )
    data = listing.json()["events"]["data"]
    assert (data[1]["event_key"], data[1]["title"], data[1]["value"]) == (
        "html_key",
        "Title here",
        "",
    )
    assert (len(data[0]["event_key"]), len(data[0]["title"])) == (192, 192)


async def test_contact_lookup_order_and_user_id(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    by_email = await subscribe("first@example.com")
    by_user = await subscribe("wp@example.com", user_id=77)
    event = {"event_key": "k", "title": "t"}
    # subscriber_id wins over email, email over user_id
    winner = await client.post(
        TRACK,
        auth=basic(tenant),
        json={**event, "subscriber_id": by_user, "email": "first@example.com"},
    )
    email_first = await client.post(
        TRACK, auth=basic(tenant), json={**event, "email": "first@example.com", "user_id": 77}
    )
    user = await client.post(TRACK, auth=basic(tenant), json={**event, "user_id": "77"})
    assert winner.status_code == email_first.status_code == user.status_code == 200
    for contact_id, expected in ((by_user, 2), (by_email, 1)):
        listing = await client.get(
            f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
        )
        assert listing.json()["events"]["data"][0]["counter"] == str(expected)


async def test_errors_in_fluentcrm_shapes(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    await subscribe("err@example.com")
    cases = [
        (
            {"email": "nobody@example.com", "event_key": "page_view", "title": "Viewed pricing"},
            {"message": "Subscriber not found", "error_code": "subscriber_not_found"},
        ),
        (
            {"email": "err@example.com", "title": "Viewed pricing"},
            {"event_key": {"required": "The event_key field is required."}},
        ),
        (
            {"email": "err@example.com", "event_key": "page_view"},
            {"title": {"required": "The title field is required."}},
        ),
        (
            {"email": "err@example.com"},
            {
                "event_key": {"required": "The event_key field is required."},
                "title": {"required": "The title field is required."},
            },
        ),
        (
            {"email": "err@example.com", "event_key": "   ", "title": "Viewed pricing"},
            {"event_key": {"required": "The event_key field is required."}},
        ),
        (
            {"event_key": "page_view", "title": "Viewed pricing"},
            {
                "message": "Current Subscriber could not be found",
                "error_code": "subscriber_not_found",
            },
        ),
        (
            {"subscriber_id": 987654321, "event_key": "page_view", "title": "Viewed pricing"},
            {"message": "Subscriber not found", "error_code": "subscriber_not_found"},
        ),
        (
            {"email": "not-an-email", "event_key": "page_view", "title": "Viewed pricing"},
            {"message": "Subscriber not found", "error_code": "subscriber_not_found"},
        ),
    ]
    for body, expected in cases:
        response = await client.post(TRACK, auth=basic(tenant), json=body)
        assert response.status_code == 422, body
        assert response.json() == expected, body
    malformed = await client.post(
        TRACK,
        auth=basic(tenant),
        content=b'{"email":',
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert malformed.json() == {
        "code": "rest_invalid_json",
        "message": "Invalid JSON body passed.",
        "data": {"status": 400, "json_error_code": 4, "json_error_message": "Syntax error"},
    }


async def test_wrong_or_missing_credentials_are_rest_forbidden(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {"email": "a@example.com", "event_key": "page_view", "title": "Viewed pricing"}
    forbidden = {
        "code": "rest_forbidden",
        "message": "Sorry, you are not allowed to do that.",
        "data": {"status": 401},
    }
    for auth in (None, httpx.BasicAuth("fcadmin", "wrong"), httpx.BasicAuth("x", tenant.key + "x")):
        response = await client.post(TRACK, auth=auth, json=body)
        assert response.status_code == 401
        assert response.json() == forbidden
    bearer = await client.post(TRACK, headers={"Authorization": f"Bearer {tenant.key}"}, json=body)
    assert bearer.status_code == 401
    listing = await client.get(f"{BASE}/subscribers/1/tracking-events")
    assert listing.json() == forbidden


async def test_tracking_off_refuses_both_routes(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("off@example.com")
    await client.patch("/v1/account", headers=tenant.headers, json={"tracking_enabled": False})
    not_enabled = {"message": "Event Tracker is not enabled", "error_code": "not_enabled"}
    tracked = await client.post(
        TRACK,
        auth=basic(tenant),
        json={"email": "off@example.com", "event_key": "page_view", "title": "Viewed pricing"},
    )
    listed = await client.get(
        f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
    )
    assert (tracked.status_code, tracked.json()) == (422, not_enabled)
    assert (listed.status_code, listed.json()) == (422, not_enabled)
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert events.json()["data"] == []


async def test_50_concurrent_identical_tracks_leave_one_row_with_counter_50(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("burst@example.com")
    body = {"email": "burst@example.com", "event_key": "page_view", "title": "Viewed pricing"}
    responses = await asyncio.gather(
        *(client.post(TRACK, auth=basic(tenant), json=body) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
    listing = await client.get(
        f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
    )
    data = listing.json()["events"]["data"]
    assert [(d["event_key"], d["counter"]) for d in data] == [("page_view", "50")]


async def test_event_tracked_here_is_an_occurrence_in_the_native_api(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("native@example.com")
    for value in ("one", "two"):
        await client.post(
            TRACK,
            auth=basic(tenant),
            json={
                "email": "native@example.com",
                "event_key": "purchase",
                "title": "Order",
                "value": value,
                "provider": "woocommerce",
            },
        )
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert [(e["event"], e["title"], e["value"], e["source"]) for e in events.json()["data"]] == [
        ("purchase", "Order", "two", "fluentcrm"),
        ("purchase", "Order", "one", "fluentcrm"),
    ]
    names = await client.get("/v1/event-names", headers=tenant.headers)
    assert [(n["name"], n["count"]) for n in names.json()["data"]] == [("purchase", 2)]


async def test_an_object_or_array_value_is_stored_as_json_text(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("json@example.com")
    for title, value in (("Order", {"total": 49.9, "sku": "A-1"}), ("Cart", ["A-1", None])):
        response = await client.post(
            TRACK,
            auth=basic(tenant),
            json={"email": "json@example.com", "event_key": "checkout", "title": title,
                  "value": value},
        )  # fmt: skip
        assert response.status_code == 200, response.text
    listing = await client.get(
        f"{BASE}/subscribers/{contact_id}/tracking-events", auth=basic(tenant)
    )
    values = {d["title"]: d["value"] for d in listing.json()["events"]["data"]}
    assert values == {"Order": '{"total":49.9,"sku":"A-1"}', "Cart": '["A-1",null]'}
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert json.loads(events.json()["data"][0]["value"]) == ["A-1", None]


async def test_an_id_beyond_64_bits_is_a_subscriber_not_found_not_a_retry(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    await subscribe("kept@example.com")
    not_found = {"message": "Subscriber not found", "error_code": "subscriber_not_found"}
    for field in ("user_id", "subscriber_id"):
        for number in (2**63 - 1, 2**63, 10**30):
            # as curl -d sends it: a form
            response = await client.post(
                TRACK,
                auth=basic(tenant),
                data={"event_key": "ab", field: str(number), "title": "t"},
            )
            assert (response.status_code, response.json()) == (422, not_found), (field, number)
            assert "Retry-After" not in response.headers
    tracked = await client.post(
        TRACK,
        auth=basic(tenant),
        data={"event_key": "ab", "email": "kept@example.com", "title": "t"},
    )
    assert tracked.status_code == 200, tracked.text
    created = await client.post(
        f"{BASE}/subscribers",
        auth=basic(tenant),
        data={"email": "huge@example.com", "user_id": str(2**63)},
    )
    assert (created.status_code, created.json()) == (
        422,
        {"user_id": {"integer": "The user_id must be an integer."}},
    )
