"""API keys on the native API and the account settings they open."""

from __future__ import annotations

from datetime import timedelta

import httpx
import sqlalchemy as sa

from tests.conftest import TenantFactory
from tests.support import ManualClock, Tenant
from trackbook.accounts import service as accounts
from trackbook.db.tables import api_keys
from trackbook.services import Services


async def test_missing_wrong_or_revoked_key_is_401_with_a_json_error(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, clock: ManualClock
) -> None:
    body = {"event": "x", "contact": {"email": "a@x.io"}}
    wrong = tenant.key[:-4] + "AAAA"
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {tenant.key}"},
        {"Authorization": f"Bearer {wrong}"},
        {"Authorization": "Bearer tb_live_x"},
    ):
        response = await client.post("/v1/track", headers=headers, json=body)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await client.post("/v1/track", headers=tenant.headers, json=body)).status_code == 201

    # as `trackbook keys revoke` does it, from outside this process's memory of keys
    await services.db.write(accounts.revoke_key, tenant.key[:16], now=clock.now())
    clock.advance(timedelta(seconds=services.settings.auth_cache_seconds + 1))
    revoked = await client.post("/v1/track", headers=tenant.headers, json=body)
    assert revoked.status_code == 401
    assert (await client.get("/v1/account", headers=tenant.headers)).status_code == 401


async def test_a_key_without_bearer_is_told_to_send_bearer(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {"event": "x", "contact": {"email": "a@x.io"}}
    for authorization in (tenant.key, f"Basic {tenant.key}", f"Token {tenant.key}"):
        for method, path, json in (("POST", "/v1/track", body), ("GET", "/v1/account", None)):
            response = await client.request(
                method, path, headers={"Authorization": authorization}, json=json
            )
            assert response.status_code == 401, (authorization, path)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            error = response.json()["error"]
            assert error["code"] == "unauthenticated"
            assert "Authorization: Bearer <API key>" in error["message"], error
            assert tenant.key not in response.text
    # no header at all: the key is missing, not misplaced
    missing = await client.post("/v1/track", json=body)
    assert missing.json()["error"]["message"] == "an API key is required"


async def test_keys_are_rechecked_once_their_memory_expires(
    client: httpx.AsyncClient, new_tenant: TenantFactory, services: Services, clock: ManualClock
) -> None:
    tenant = await new_tenant()
    assert (await client.get("/v1/account", headers=tenant.headers)).status_code == 200
    await services.db.write(accounts.revoke_key, tenant.key[:16], now=clock.now())
    clock.advance(timedelta(seconds=services.settings.auth_cache_seconds - 1))
    assert (await client.get("/v1/account", headers=tenant.headers)).status_code == 200
    clock.advance(timedelta(seconds=2))
    assert (await client.get("/v1/account", headers=tenant.headers)).status_code == 401


async def test_keys_are_stored_as_hashes_and_record_last_use(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await client.get("/v1/account", headers=tenant.headers)
    async with services.db.read() as conn:
        row = (
            await conn.execute(sa.select(api_keys).where(api_keys.c.account_id == tenant.id))
        ).one()
    assert row.prefix == tenant.key[:16]
    assert row.prefix.startswith("tb_live_")
    assert tenant.key not in {row.key_hash, row.prefix, row.name}
    assert row.key_hash == accounts.hash_key(tenant.key)
    assert row.last_used_at is not None


async def test_account_settings_read_and_change(client: httpx.AsyncClient, tenant: Tenant) -> None:
    account = await client.get("/v1/account", headers=tenant.headers)
    assert account.json() | {"created_at": None} == {
        "id": tenant.id,
        "name": "Acme",
        "timezone": "UTC",
        "tracking_enabled": True,
        "created_at": None,
    }
    changed = await client.patch(
        "/v1/account", headers=tenant.headers, json={"timezone": "Europe/Berlin", "name": "Acme EU"}
    )
    assert changed.json()["timezone"] == "Europe/Berlin"
    assert changed.json()["name"] == "Acme EU"
    bad = await client.patch("/v1/account", headers=tenant.headers, json={"timezone": "Mars/Base"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "timezone"
