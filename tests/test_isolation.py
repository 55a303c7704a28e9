"""Account A can neither read nor change account B's data through any route."""

from __future__ import annotations

import httpx

from tests.conftest import TenantFactory


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
            "properties": {"card": "4242"},
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
