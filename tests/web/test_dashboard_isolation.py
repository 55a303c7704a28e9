"""The dashboard signed in to account B, aimed at account A's ids: nothing of A is
shown or changed."""

from __future__ import annotations

import re

import httpx

from tests.conftest import TenantFactory
from tests.support import Tenant
from trackbook.accounts import service as accounts
from trackbook.accounts import users
from trackbook.services import Services
from trackbook.web.session import SIGNIN_CSRF_COOKIE

PASSWORD = "correct horse battery"


async def sign_in(client: httpx.AsyncClient, email: str) -> str:
    form = await client.get("/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    signed = await client.post(
        "/signin", data={"csrf": token[1], "next": "/", "email": email, "password": PASSWORD}
    )
    assert signed.status_code == 303, signed.text
    page = await client.get("/settings")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return csrf[1]


async def test_account_b_cannot_see_or_change_account_a(
    client: httpx.AsyncClient, tenant: Tenant, new_tenant: TenantFactory, services: Services
) -> None:
    other = await new_tenant("Other")
    tracked = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "secret-plan", "contact": {"email": "a-only@example.com"}},
    )
    contact_id = tracked.json()["contact_id"]
    automation = await client.post(
        "/v1/automations",
        headers=tenant.headers,
        json={
            "name": "A's",
            "trigger": {"event": "secret-plan"},
            "actions": [{"type": "add_tag", "tag": "a"}],
        },
    )
    automation_id = automation.json()["id"]
    email = f"b{other.id}@example.com"
    await services.db.write(users.create_user, other.id, email, PASSWORD, now=services.clock.now())
    csrf = await sign_in(client, email)

    for path in (
        f"/contacts/{contact_id}",
        f"/automations/{automation_id}/runs",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "a-only@example.com" not in response.text
    for path in ("/", "/contacts?q=a-only", "/events", "/events/secret-plan", "/dropped"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "a-only@example.com" not in response.text, path
        assert "secret-plan" not in response.text or path == "/events/secret-plan", path
    toggled = await client.post(
        f"/automations/{automation_id}/enabled", data={"csrf": csrf, "enabled": "off"}
    )
    assert toggled.status_code == 404
    prefix = (await services.db.query(accounts.list_keys, tenant.id))[0].prefix
    revoked = await client.post("/settings/keys/revoke", data={"csrf": csrf, "prefix": prefix})
    assert revoked.status_code == 404
    still = await client.get(f"/v1/automations/{automation_id}", headers=tenant.headers)
    assert still.json()["enabled"] is True
    assert (await client.get("/v1/account", headers=tenant.headers)).status_code == 200


async def test_a_csrf_token_that_is_not_ascii_is_refused_not_a_server_error(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await services.db.write(
        users.create_user, tenant.id, "nonascii@example.com", PASSWORD, now=services.clock.now()
    )
    client.cookies.set(SIGNIN_CSRF_COOKIE, "x")
    signin = await client.post(
        "/signin", data={"csrf": "\u00e9", "next": "/", "email": "nonascii@example.com"}
    )
    assert signin.status_code == 401
    assert "The form expired" in signin.text
    await sign_in(client, "nonascii@example.com")
    forged = await client.post("/settings/tracking", data={"tracking": "off", "csrf": "\u00e9"})
    assert forged.status_code == 403
