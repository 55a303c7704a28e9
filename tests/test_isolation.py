"""Account A can neither read nor change account B's data through any route."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tests.conftest import TenantFactory
from tests.support import Tenant
from trackbook.accounts import service as accounts
from trackbook.accounts.service import Account
from trackbook.services import Services

FLUENT = "/wp-json/fluent-crm/v2"


async def test_another_accounts_ids_are_404_on_every_route(
    client: httpx.AsyncClient, new_tenant: TenantFactory
) -> None:
    owner = await new_tenant("Owner")
    intruder = await new_tenant("Intruder")
    tracked = await client.post(
        "/v1/track",
        headers=owner.headers,
        json={
            "event": "secret_purchase",
            "contact": {"email": "vip@owner.io", "anonymous_id": None},
            "properties": {"card": "card-4242-of-the-owner"},
        },
    )
    contact_id = tracked.json()["contact_id"]
    list_id = (await client.post("/v1/lists", headers=owner.headers, json={"name": "VIP"})).json()[
        "id"
    ]
    own_contact = (
        await client.post(
            "/v1/contacts", headers=intruder.headers, json={"email": "me@intruder.io"}
        )
    ).json()["id"]
    own_list = (
        await client.post("/v1/lists", headers=intruder.headers, json={"name": "Mine"})
    ).json()["id"]

    attempts = [
        ("GET", f"/v1/contacts/{contact_id}", None),
        ("PATCH", f"/v1/contacts/{contact_id}", {"first_name": "Mallory"}),
        ("DELETE", f"/v1/contacts/{contact_id}", None),
        ("GET", f"/v1/contacts/{contact_id}/events", None),
        ("GET", f"/v1/contacts/{contact_id}/counters", None),
        ("GET", f"/v1/lists/{list_id}", None),
        ("PUT", f"/v1/lists/{list_id}/contacts/{own_contact}", None),
        ("PUT", f"/v1/lists/{own_list}/contacts/{contact_id}", None),
        ("DELETE", f"/v1/lists/{list_id}/contacts/{contact_id}", None),
        ("POST", "/v1/track", {"event": "x", "contact": {"id": contact_id}}),
        ("GET", "/v1/event-names/secret_purchase/properties", None),
    ]
    for method, url, body in attempts:
        response = await client.request(method, url, headers=intruder.headers, json=body)
        assert response.status_code == 404, (method, url, response.text)
        assert "vip@owner.io" not in response.text

    batch = await client.post(
        "/v1/batch",
        headers=intruder.headers,
        json={"events": [{"event": "x", "contact": {"id": contact_id}}]},
    )
    assert batch.json()["results"][0]["error"]["code"] == "contact_not_found"
    # the intruder's own email lookup does not see the owner's contact
    search = await client.get(
        "/v1/contacts", headers=intruder.headers, params={"email": "vip@owner.io"}
    )
    assert search.json()["data"] == []
    names = await client.get("/v1/event-names", headers=intruder.headers)
    assert names.json()["data"] == []
    lists = await client.get("/v1/lists", headers=intruder.headers)
    assert [item["name"] for item in lists.json()["data"]] == ["Mine"]
    # the same email in the intruder's account is a different contact
    theirs = await client.post(
        "/v1/track",
        headers=intruder.headers,
        json={"event": "x", "contact": {"email": "vip@owner.io"}},
    )
    assert theirs.json()["contact_id"] != contact_id

    # and the owner's data is untouched
    details = await client.get(f"/v1/contacts/{contact_id}", headers=owner.headers)
    assert details.status_code == 200
    assert details.json()["first_name"] is None
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=owner.headers)
    assert [e["event"] for e in events.json()["data"]] == ["secret_purchase"]


@dataclass(frozen=True)
class OwnerWorld:
    """Account B's data, as every dialect can name it."""

    tenant: Tenant
    account: Account
    contact_id: int
    anonymous_contact_id: int
    list_id: int
    event_id: int
    segment_id: int


async def _owner_world(client: httpx.AsyncClient, services: Services, owner: Tenant) -> OwnerWorld:
    account: Account = await services.db.query(accounts.get_account, owner.id)
    list_id = (await client.post("/v1/lists", headers=owner.headers, json={"name": "VIP"})).json()[
        "id"
    ]
    octeth = await client.post(
        "/api/v1/event",
        json={"APIKey": owner.key, "Event": "secret_purchase", "ListID": list_id,
              "Email": "vip@owner.io", "ID": "owner-ext-1",
              "Properties": {"card": "card-4242-of-the-owner"}},
    )  # fmt: skip
    assert octeth.status_code == 200, octeth.text
    [contact] = (
        await client.get("/v1/contacts", headers=owner.headers, params={"email": "vip@owner.io"})
    ).json()["data"]
    fluent = await client.post(
        f"{FLUENT}/subscribers/track-event",
        auth=("wp", owner.key),
        json={"subscriber_id": contact["id"], "event_key": "renewal", "title": "Gold"},
    )
    assert fluent.status_code == 200, fluent.text
    anonymous = await client.post(
        "/v1/track",
        headers=owner.headers,
        json={"event": "page_view", "contact": {"anonymous_id": "owner-visitor"}},
    )
    await client.post(
        "/api/3/eventTrackingEvents",
        headers={"Api-Token": owner.key},
        json={"eventTrackingEvent": {"name": "owner whitelisted"}},
    )
    dropped_for_owner = await client.post(
        "/event",
        data={"actid": account.actid, "key": services.keyring.open(account.sealed_event_key),
              "event": "owner_dropped", "visit": '{"email":"stranger@owner.io"}'},
    )  # fmt: skip
    assert dropped_for_owner.json()["success"] == 1
    segment = await client.post(
        "/v1/segments",
        headers=owner.headers,
        json={"name": "Buyers", "definition": {"all": [{"list": {"id": list_id}}]}},
    )
    assert segment.status_code == 201, segment.text
    events = await client.get(f"/v1/contacts/{contact['id']}/events", headers=owner.headers)
    return OwnerWorld(
        tenant=owner,
        account=account,
        contact_id=contact["id"],
        anonymous_contact_id=anonymous.json()["contact_id"],
        list_id=list_id,
        event_id=events.json()["data"][-1]["id"],
        segment_id=segment.json()["id"],
    )


async def _owner_state(client: httpx.AsyncClient, world: OwnerWorld) -> list[object]:
    """Everything of B's an intruder could read or change, as B reads it."""
    headers = world.tenant.headers
    reads = [
        client.get("/v1/account", headers=headers),
        client.get(f"/v1/contacts/{world.contact_id}", headers=headers),
        client.get(f"/v1/contacts/{world.contact_id}/events", headers=headers),
        client.get(f"/v1/contacts/{world.contact_id}/counters", headers=headers),
        client.get(f"/v1/contacts/{world.anonymous_contact_id}", headers=headers),
        client.get(f"/v1/contacts/{world.anonymous_contact_id}/events", headers=headers),
        client.get("/v1/contacts", headers=headers),
        client.get("/v1/lists", headers=headers),
        client.get("/v1/event-names", headers=headers),
        client.get("/v1/dropped-events", headers=headers),
        client.get(f"/v1/segments/{world.segment_id}/contacts", headers=headers),
        client.get("/api/3/eventTrackingEvents", headers={"Api-Token": world.tenant.key}),
        client.get(
            "/api/v1/website_events.properties",
            params={"APIKey": world.tenant.key, "ListID": world.list_id},
        ),
    ]
    state: list[object] = []
    for read in reads:
        response = await read
        assert response.status_code == 200, response.text
        state.append(response.json())
    return state


def _assert_nothing_of(world: OwnerWorld, response: httpx.Response) -> None:
    for secret in (
        "vip@owner.io",
        "owner-ext-1",
        "card-4242-of-the-owner",
        "secret_purchase",
        "owner-visitor",
    ):
        assert secret not in response.text, (response.request.url, secret)


async def test_dialect_routes_neither_show_nor_change_another_accounts_data(
    client: httpx.AsyncClient, services: Services, new_tenant: TenantFactory
) -> None:
    world = await _owner_world(client, services, await new_tenant("Owner"))
    intruder = await new_tenant("Intruder")
    intruder_account: Account = await services.db.query(accounts.get_account, intruder.id)
    before = await _owner_state(client, world)
    basic = ("wp", intruder.key)
    api_token = {"Api-Token": intruder.key}
    b = world

    # FluentCRM
    for path in (f"/subscribers/{b.contact_id}", f"/subscribers/{b.contact_id}/tracking-events"):
        response = await client.get(FLUENT + path, auth=basic)
        assert response.status_code == 404, (path, response.text)
        _assert_nothing_of(b, response)
    for search in ("vip@owner.io", "owner", ""):
        found = await client.get(f"{FLUENT}/subscribers", auth=basic, params={"search": search})
        assert found.json()["subscribers"]["data"] == [], search
    joined = await client.post(
        f"{FLUENT}/subscribers",
        auth=basic,
        json={"email": "join@intruder.io", "lists": [b.list_id]},
    )
    assert 400 <= joined.status_code < 500, joined.text
    assert (
        await client.get(
            "/v1/contacts", headers=intruder.headers, params={"email": "join@intruder.io"}
        )
    ).json()["data"] == []
    foreign_subscriber = await client.post(
        f"{FLUENT}/subscribers/track-event",
        auth=basic,
        json={"subscriber_id": b.contact_id, "event_key": "renewal", "title": "Gold"},
    )
    assert (foreign_subscriber.status_code, foreign_subscriber.json()["error_code"]) == (
        422,
        "subscriber_not_found",
    )

    # Octeth
    listed = await client.post(
        "/api/v1/event",
        json={"APIKey": intruder.key, "Event": "secret_purchase", "ListID": b.list_id,
              "Email": "list@intruder.io", "Properties": {"x": 1}},
    )  # fmt: skip
    assert (listed.status_code, listed.json()) == (
        422,
        {"Errors": [{"Code": 4, "Message": "Invalid ListID parameter"}]},
    )
    for path, params in (
        ("/api/v1/website_events.properties", {"APIKey": intruder.key, "ListID": b.list_id}),
        ("/api.php", {"Command": "website_events.properties", "APIKey": intruder.key,
                      "ListID": b.list_id}),
    ):  # fmt: skip
        properties = await client.get(path, params=params)
        assert properties.json() == {"Errors": [{"Code": 3, "Message": "List not found"}]}
    # ActiveCampaign v3
    for method, path, body in (
        ("GET", f"/api/3/contacts/{b.contact_id}", None),
        ("PUT", f"/api/3/contacts/{b.contact_id}", {"contact": {"firstName": "Mallory"}}),
        ("DELETE", f"/api/3/contacts/{b.contact_id}", None),
        ("GET", f"/api/3/contacts/{b.contact_id}/trackingLogs", None),
        ("GET", f"/api/3/activities?contact={b.contact_id}", None),
        ("GET", f"/api/3/trackingLogs/{b.event_id}/contact", None),
        ("DELETE", "/api/3/eventTrackingEvents/owner%20whitelisted", None),
    ):
        response = await client.request(method, path, headers=api_token, json=body)
        assert response.status_code == 404, (method, path, response.text)
        _assert_nothing_of(b, response)
    by_email = await client.get(
        "/api/3/contacts", headers=api_token, params={"email": "vip@owner.io"}
    )
    assert by_email.json() == {"contacts": [], "meta": {"total": "0"}}
    every = await client.get("/api/3/contacts", headers=api_token)
    assert str(b.contact_id) not in {c["id"] for c in every.json()["contacts"]}
    whitelist = await client.get("/api/3/eventTrackingEvents", headers=api_token)
    assert whitelist.json()["eventTrackingEvents"] == []
    switched = await client.put(
        "/api/3/eventTracking", headers=api_token, json={"eventTracking": {"enabled": False}}
    )
    assert switched.json() == {"eventTracking": {"enabled": False}}
    await client.put(
        "/api/3/eventTracking", headers=api_token, json={"eventTracking": {"enabled": True}}
    )

    # trackcmp and v1: A's actid with B's key, B's actid with A's key or API key
    for data in (
        {"actid": intruder_account.actid, "key": services.keyring.open(b.account.sealed_event_key)},
        {"actid": b.account.actid, "key": services.keyring.open(intruder_account.sealed_event_key)},
    ):
        refused = await client.post(
            "/event", data={**data, "event": "owner_dropped", "visit": '{"email":"vip@owner.io"}'}
        )
        assert (refused.status_code, refused.json()["success"]) == (403, 0)
    v1 = await client.post(
        "/admin/api.php?api_action=track_event_add&api_output=json",
        data={"api_key": intruder.key, "actid": b.account.actid,
              "key": services.keyring.open(b.account.sealed_event_key),
              "event": "owner_dropped", "visit": '{"email":"vip@owner.io"}'},
    )  # fmt: skip
    assert (v1.status_code, v1.json()["success"]) == (403, 0)
    # A's own actid and key, with B's contact's email: unknown in A, dropped in A
    spawned = await client.post(
        "/event",
        data={"actid": intruder_account.actid,
              "key": services.keyring.open(intruder_account.sealed_event_key),
              "event": "probe", "visit": '{"email":"vip@owner.io"}'},
    )  # fmt: skip
    assert spawned.json()["success"] == 1

    # native routes that take ids, lists or anonymous ids
    identify_b = await client.post(
        "/v1/identify",
        headers=intruder.headers,
        json={"anonymous_id": "intruder-visitor", "contact": {"id": b.contact_id}},
    )
    assert identify_b.status_code == 404, identify_b.text
    own = await client.post(
        "/v1/contacts", headers=intruder.headers, json={"email": "me@intruder.io"}
    )
    identify_visitor = await client.post(
        "/v1/identify",
        headers=intruder.headers,
        json={"anonymous_id": "owner-visitor", "contact": {"id": own.json()["id"]}},
    )
    assert identify_visitor.status_code == 200, identify_visitor.text
    for definition in (
        {"all": [{"list": {"id": b.list_id}}]},
        {"all": [{"event": {"name": "secret_purchase"}}]},
        {"all": [{"contact": {"field": "email", "op": "equals", "value": "vip@owner.io"}}]},
    ):
        preview = await client.post(
            "/v1/segments/preview", headers=intruder.headers, json={"definition": definition}
        )
        assert preview.status_code == 200, preview.text
        assert (preview.json()["count"], preview.json()["contacts"]) == (0, []), definition
    for method, path in (
        ("GET", f"/v1/segments/{b.segment_id}"),
        ("GET", f"/v1/segments/{b.segment_id}/count"),
        ("GET", f"/v1/segments/{b.segment_id}/contacts"),
        ("DELETE", f"/v1/segments/{b.segment_id}"),
    ):
        response = await client.request(method, path, headers=intruder.headers)
        assert response.status_code == 404, (method, path, response.text)
    dropped_seen = await client.get("/v1/dropped-events", headers=intruder.headers)
    assert [d["payload"]["event"] for d in dropped_seen.json()["data"]] == ["probe"]

    # B's external id and email name nothing of B's in A's account
    octeth_identify = await client.post(
        "/api/v1/event",
        json={"APIKey": intruder.key, "Event": "identify", "ID": "owner-ext-1",
              "Email": "vip@owner.io"},
    )  # fmt: skip
    assert octeth_identify.status_code == 200, octeth_identify.text
    mine = await client.get(
        "/v1/contacts", headers=intruder.headers, params={"email": "vip@owner.io"}
    )
    [own_copy] = mine.json()["data"]
    assert own_copy["id"] != b.contact_id

    assert await _owner_state(client, world) == before
