"""/v1/segments: definitions, counts, members and preview."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.support import ManualClock, Tenant

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


async def _track(
    client: httpx.AsyncClient, tenant: Tenant, events: list[dict[str, object]]
) -> None:
    response = await client.post("/v1/batch", headers=tenant.headers, json={"events": events})
    assert {r["status"] for r in response.json()["results"]} == {"created"}, response.text


async def test_purchased_three_times_in_30_days(
    client: httpx.AsyncClient, tenant: Tenant, clock: ManualClock
) -> None:
    clock.set(NOW)

    def purchase(email: str, day: int) -> dict[str, object]:
        return {
            "event": "purchase",
            "contact": {"email": email},
            "timestamp": f"2026-05-{day:02d}T10:00:00Z",
            "properties": {"total": day * 10, "items": {"sku": "A-1"}},
        }

    await _track(
        client,
        tenant,
        [purchase("loyal@x.io", d) for d in (5, 10, 20)]
        + [purchase("old@x.io", 1), purchase("old@x.io", 2), purchase("old@x.io", 25)]
        + [purchase("twice@x.io", d) for d in (20, 21)],
    )
    definition = {
        "all": [
            {
                "event": {
                    "name": "purchase",
                    "count": {"op": ">=", "value": 3},
                    "within": {"last": 30, "unit": "days"},
                }
            },
        ]
    }
    created = await client.post(
        "/v1/segments", headers=tenant.headers, json={"name": "Loyal", "definition": definition}
    )
    assert created.status_code == 201, created.text
    segment_id = created.json()["id"]
    count = await client.get(f"/v1/segments/{segment_id}/count", headers=tenant.headers)
    assert count.json()["count"] == 1
    members = await client.get(f"/v1/segments/{segment_id}/contacts", headers=tenant.headers)
    assert [c["email"] for c in members.json()["data"]] == ["loyal@x.io"]

    by_property = {
        "any": [
            {"property": {"event": "purchase", "path": "total", "op": ">", "value": 240}},
            {
                "property": {
                    "event": "purchase",
                    "path": "items.sku",
                    "op": "equals",
                    "value": "B-2",
                }
            },
        ]
    }
    preview = await client.post(
        "/v1/segments/preview", headers=tenant.headers, json={"definition": by_property}
    )
    assert preview.json()["count"] == 1
    assert [c["email"] for c in preview.json()["contacts"]] == ["old@x.io"]

    renamed = await client.patch(
        f"/v1/segments/{segment_id}", headers=tenant.headers, json={"name": "Loyal buyers"}
    )
    assert renamed.json()["name"] == "Loyal buyers"
    listed = await client.get("/v1/segments", headers=tenant.headers)
    assert [s["name"] for s in listed.json()["data"]] == ["Loyal buyers"]
    assert (
        await client.delete(f"/v1/segments/{segment_id}", headers=tenant.headers)
    ).status_code == 204
    gone = await client.get(f"/v1/segments/{segment_id}/count", headers=tenant.headers)
    assert gone.status_code == 404


async def test_invalid_definitions_name_the_bad_node(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    cases = [
        ({"all": []}, "definition.all"),
        (
            {"all": [{"event": {"name": "x", "count": {"op": "~", "value": 1}}}]},
            "definition.all.0.event.count.op",
        ),
        (
            {
                "any": [
                    {"all": [{"property": {"event": "x", "path": "a", "op": ">", "value": "big"}}]}
                ]
            },
            "definition.any.0.all.0.property.value",
        ),
        ({"all": [{"teleport": {}}]}, "definition.all.0"),
        (
            {"all": [{"event": {"name": "x", "within": {"last": 3, "unit": "weeks"}}}]},
            "definition.all.0.event.within.unit",
        ),
        (
            {"all": [{"contact": {"field": "phone", "op": "equals", "value": "1"}}]},
            "definition.all.0.contact.field",
        ),
    ]
    for definition, field in cases:
        response = await client.post(
            "/v1/segments", headers=tenant.headers, json={"name": "Bad", "definition": definition}
        )
        assert response.status_code == 422, definition
        assert response.json()["error"]["field"] == field, response.json()
        preview = await client.post(
            "/v1/segments/preview", headers=tenant.headers, json={"definition": definition}
        )
        assert preview.json()["error"]["field"] == field


async def test_segments_are_per_account(
    client: httpx.AsyncClient, tenant: Tenant, new_tenant: object
) -> None:
    other = await new_tenant("Other")  # type: ignore[operator]
    await _track(client, tenant, [{"event": "signup", "contact": {"email": "mine@x.io"}}])
    definition = {"all": [{"event": {"name": "signup"}}]}
    theirs = await client.post(
        "/v1/segments/preview", headers=other.headers, json={"definition": definition}
    )
    assert theirs.json()["count"] == 0
    mine = await client.post(
        "/v1/segments", headers=tenant.headers, json={"name": "S", "definition": definition}
    )
    foreign = await client.get(f"/v1/segments/{mine.json()['id']}/contacts", headers=other.headers)
    assert foreign.status_code == 404


async def test_patterns_are_checked_and_cannot_stall_the_server(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    bad = await client.post(
        "/v1/segments/preview",
        headers=tenant.headers,
        json={"definition": {"all": [{"value": {"event": "rx", "op": "regex", "value": "("}}]}},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "definition.all.0.value.value"
    huge = await client.post(
        "/v1/segments/preview",
        headers=tenant.headers,
        json={"definition": {"event": {"name": "rx", "count": {"op": ">=", "value": 10**20}}}},
    )
    assert (huge.status_code, huge.json()["error"]["field"]) == (
        422,
        "definition.event.count.value",
    )
    await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "rx", "contact": {"email": "rx@example.com"}, "value": "a" * 42 + "!"},
    )
    # catastrophic for a backtracking engine; linear with RE2 (SQLite) and PostgreSQL's
    nested = await client.post(
        "/v1/segments/preview",
        headers=tenant.headers,
        json={"definition": {"value": {"event": "rx", "op": "regex", "value": "^(a+)+$"}}},
    )
    assert (nested.status_code, nested.json()["count"]) == (200, 0)


async def test_a_repetition_postgresql_refuses_is_refused_when_saved(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    def definition(pattern: str) -> dict[str, object]:
        return {"property": {"event": "rx", "path": "code", "op": "regex", "value": pattern}}

    # RE2 takes counts up to 1000, PostgreSQL's engine up to 255
    refused = await client.post(
        "/v1/segments",
        headers=tenant.headers,
        json={"name": "Long codes", "definition": definition("^[a-z]{1,1000}$")},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "definition.property.value"
    assert "255" in refused.json()["error"]["message"]
    await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "rx", "contact": {"email": "rx@example.com"}, "properties": {"code": "ab"}},
    )
    saved = await client.post(
        "/v1/segments",
        headers=tenant.headers,
        json={"name": "Codes", "definition": definition("^[a-z]{1,255}$")},
    )
    assert saved.status_code == 201, saved.text
    counted = await client.get(f"/v1/segments/{saved.json()['id']}/count", headers=tenant.headers)
    assert (counted.status_code, counted.json()["count"]) == (200, 1)
