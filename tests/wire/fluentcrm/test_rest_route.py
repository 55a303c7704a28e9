"""The `?rest_route=` form WordPress serves without pretty permalinks (capture 31)."""

from __future__ import annotations

import httpx

from tests.support import Tenant
from tests.wire.fluentcrm.conftest import Subscribe, basic


async def test_track_and_list_through_rest_route(
    client: httpx.AsyncClient, tenant: Tenant, subscribe: Subscribe
) -> None:
    contact_id = await subscribe("plain@example.com")
    for front_page, key in (("/", "first"), ("/index.php", "second")):
        tracked = await client.post(
            front_page,
            params={"rest_route": "/fluent-crm/v2/subscribers/track-event"},
            auth=basic(tenant),
            json={"email": "plain@example.com", "event_key": key, "title": "Plain"},
        )
        assert tracked.status_code == 200, tracked.text
        assert tracked.json()["message"] == "Event has been tracked"

    listing = await client.get(
        f"/?rest_route=/fluent-crm/v2/subscribers/{contact_id}/tracking-events&per_page=1",
        auth=basic(tenant),
    )
    assert listing.status_code == 200, listing.text
    events = listing.json()["events"]
    assert (events["total"], events["per_page"], events["last_page"]) == (2, 1, 2)
    # FluentCRM's links lose the path in this form (capture 31)
    assert (events["next_page_url"], events["prev_page_url"]) == ("?page=2", None)
    assert [d["event_key"] for d in events["data"]] == ["second"]

    found = await client.get(
        "/index.php",
        params={"rest_route": "/fluent-crm/v2/subscribers", "search": "plain@"},
        auth=basic(tenant),
    )
    assert [s["id"] for s in found.json()["subscribers"]["data"]] == [contact_id]


async def test_rest_route_errors_keep_the_wordpress_shape(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    forbidden = await client.get("/?rest_route=/fluent-crm/v2/subscribers/1/tracking-events")
    assert (forbidden.status_code, forbidden.json()["code"]) == (401, "rest_forbidden")
    missing = await client.post(
        "/?rest_route=/fluent-crm/v2/subscribers/track-event",
        auth=basic(tenant),
        json={"email": "nobody@example.com", "event_key": "k", "title": "t"},
    )
    assert (missing.status_code, missing.json()["error_code"]) == (422, "subscriber_not_found")
    for elsewhere in ("/?rest_route=/wp/v2/posts", "/index.php?rest_route=/fluent-crm/v20/x"):
        response = await client.get(elsewhere, auth=basic(tenant))
        assert response.status_code == 404, elsewhere
        assert response.json()["code"] == "rest_no_route"
    dashboard = await client.get("/", auth=basic(tenant))
    assert (dashboard.status_code, dashboard.headers["location"]) == (303, "/signin?next=/")
