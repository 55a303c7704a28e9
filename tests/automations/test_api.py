"""/v1/automations and /v1/webhooks: create, read, change, switch, delete; bad input."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TenantFactory
from tests.support import Tenant

TAG_ON_SIGNUP = {
    "name": "Tag sign-ups",
    "trigger": {"event": "signup"},
    "actions": [{"type": "add_tag", "tag": "new"}],
}


async def test_automation_lifecycle(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await client.post("/v1/automations", headers=tenant.headers, json=TAG_ON_SIGNUP)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["enabled"] is True
    assert body["frequency"] == "every_time"
    assert body["trigger"] == {"event": "signup"}
    url = f"/v1/automations/{body['id']}"

    disabled = await client.post(f"{url}/disable", headers=tenant.headers)
    assert disabled.json()["enabled"] is False
    enabled = await client.post(f"{url}/enable", headers=tenant.headers)
    assert enabled.json()["enabled"] is True
    patched = await client.patch(
        url, headers=tenant.headers, json={"frequency": "once", "conditions": {"min_count": 2}}
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["frequency"], patched.json()["conditions"]) == ("once", {"min_count": 2})
    listed = await client.get("/v1/automations", headers=tenant.headers)
    assert [a["name"] for a in listed.json()["data"]] == ["Tag sign-ups"]
    duplicate = await client.post("/v1/automations", headers=tenant.headers, json=TAG_ON_SIGNUP)
    assert duplicate.status_code == 409

    assert (await client.delete(url, headers=tenant.headers)).status_code == 204
    assert (await client.get(url, headers=tenant.headers)).status_code == 404
    assert (await client.get(f"{url}/runs", headers=tenant.headers)).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trigger": {}}, "trigger.event"),
        ({"actions": []}, "actions"),
        ({"actions": [{"type": "fax"}]}, "actions.0.type"),
        ({"actions": [{"type": "add_tag", "tag": "x", "colour": "red"}]}, "actions.0.colour"),
        ({"actions": [{"type": "wait", "amount": 0, "unit": "days"}]}, "actions.0.amount"),
        ({"actions": [{"type": "email", "subject": "Hi"}]}, "actions.0"),
        (
            {"actions": [{"type": "email", "subject": "Hi", "text": "{{ broken"}]},
            "actions.0.text",
        ),
        ({"actions": [{"type": "track", "event": "signup"}]}, "actions.0.event"),
        *(
            (
                {"actions": [{"type": "email", "subject": "Hi", "text": "x", "to": to}]},
                "actions.0.to",
            )
            for to in ("a@example.com, b@example.com", "Ann <a@example.com>", ["a@example.com"])
        ),
        ({"actions": [{"type": "webhook", "webhook_id": 999999}]}, "actions.0.webhook_id"),
        ({"actions": [{"type": "add_to_list", "list_id": 999999}]}, "actions.0.list_id"),
        ({"conditions": {"min_count": 0}}, "conditions.min_count"),
        ({"conditions": {"segment_id": 999999}}, "conditions.segment_id"),
        (
            {"conditions": {"match": [{"property": {"path": "plan", "op": "like"}}]}},
            "conditions.match.0.property.op",
        ),
        (
            {"conditions": {"match": [{"value": {"event": "other", "op": "is_set"}}]}},
            "conditions.match.0.value.event",
        ),
        (
            {"conditions": {"match": [{"value": {"op": "regex", "value": "("}}]}},
            "conditions.match.0.value.value",
        ),
    ],
)
async def test_invalid_automation_is_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, change: dict[str, object], field: str
) -> None:
    response = await client.post(
        "/v1/automations", headers=tenant.headers, json=TAG_ON_SIGNUP | change
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_another_accounts_automations_webhooks_and_lists_are_not_found(
    client: httpx.AsyncClient, tenant: Tenant, new_tenant: TenantFactory
) -> None:
    other = await new_tenant("Other")
    hook = await client.post(
        "/v1/webhooks", headers=other.headers, json={"url": "https://example.com/hook"}
    )
    other_list = await client.post("/v1/lists", headers=other.headers, json={"name": "VIP"})
    automation = await client.post("/v1/automations", headers=other.headers, json=TAG_ON_SIGNUP)
    automation_url = f"/v1/automations/{automation.json()['id']}"
    hook_url = f"/v1/webhooks/{hook.json()['id']}"
    for method, url in [
        ("GET", automation_url),
        ("PATCH", automation_url),
        ("DELETE", automation_url),
        ("POST", f"{automation_url}/disable"),
        ("GET", f"{automation_url}/runs"),
        ("GET", hook_url),
        ("PATCH", hook_url),
        ("DELETE", hook_url),
        ("GET", f"{hook_url}/deliveries"),
    ]:
        response = await client.request(
            method, url, headers=tenant.headers, json={} if method == "PATCH" else None
        )
        assert response.status_code == 404, (method, url, response.text)
    for action in (
        {"type": "webhook", "webhook_id": hook.json()["id"]},
        {"type": "add_to_list", "list_id": other_list.json()["id"]},
    ):
        refused = await client.post(
            "/v1/automations", headers=tenant.headers, json=TAG_ON_SIGNUP | {"actions": [action]}
        )
        assert refused.status_code == 422
    assert (await client.get("/v1/automations", headers=tenant.headers)).json()["data"] == []
    still = await client.get(automation_url, headers=other.headers)
    assert still.json()["enabled"] is True


async def test_webhook_endpoints(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await client.post(
        "/v1/webhooks",
        headers=tenant.headers,
        json={"url": "https://example.com/hook", "event_names": ["signup", "signup", "*"]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["event_names"] == ["signup", "*"]
    url = f"/v1/webhooks/{body['id']}"
    patched = await client.patch(url, headers=tenant.headers, json={"enabled": False})
    assert patched.json()["enabled"] is False
    assert "secret" not in patched.json()
    listed = await client.get("/v1/webhooks", headers=tenant.headers)
    assert [w["id"] for w in listed.json()["data"]] == [body["id"]]
    assert "secret" not in listed.json()["data"][0]
    for bad in ("ftp://example.com/x", "not a url", "https://user:pw@example.com/"):
        refused = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["field"] == "url"
    assert (await client.delete(url, headers=tenant.headers)).status_code == 204
    assert (await client.get(url, headers=tenant.headers)).status_code == 404


async def test_a_segment_or_webhook_an_automation_uses_cannot_be_deleted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = tenant.headers
    segment = await client.post(
        "/v1/segments",
        headers=headers,
        json={
            "name": "Subscribed",
            "definition": {
                "all": [{"contact": {"field": "status", "op": "equals", "value": "subscribed"}}]
            },
        },
    )
    hook = await client.post(
        "/v1/webhooks", headers=headers, json={"url": "http://127.0.0.1:9/hook"}
    )
    automation = await client.post(
        "/v1/automations",
        headers=headers,
        json={
            "name": "Notify subscribers",
            "trigger": {"event": "signup"},
            "conditions": {"segment_id": segment.json()["id"]},
            "actions": [{"type": "webhook", "webhook_id": hook.json()["id"]}],
        },
    )
    assert automation.status_code == 201, automation.text
    automation_id = automation.json()["id"]
    for path in (f"/v1/segments/{segment.json()['id']}", f"/v1/webhooks/{hook.json()['id']}"):
        refused = await client.delete(path, headers=headers)
        assert refused.status_code == 409, refused.text
        message = refused.json()["error"]["message"]
        assert f"automation {automation_id} (Notify subscribers)" in message
        assert (await client.get(path, headers=headers)).status_code == 200
    await client.delete(f"/v1/automations/{automation_id}", headers=headers)
    for path in (f"/v1/segments/{segment.json()['id']}", f"/v1/webhooks/{hook.json()['id']}"):
        assert (await client.delete(path, headers=headers)).status_code == 204
