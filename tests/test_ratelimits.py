"""Rate limits: the vendors' limits, their headers, 429 in each dialect's shape, and
counters shared across processes through Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.support import UNLIMITED, ManualClock, Tenant, make_tenant
from trackbook.accounts import service as accounts
from trackbook.app import create_app
from trackbook.services import Services
from trackbook.settings import Settings

TIGHT = UNLIMITED | {
    "rate_limit_octeth_track": "3/60 seconds",
    "rate_limit_octeth_properties": "1/60 seconds",
    "rate_limit_activecampaign": "2/second",
    "rate_limit_trackcmp_ip": "2/minute",
    "rate_limit_native": "2/minute",
    "rate_limit_fluentcrm": "2/minute",
}


async def serve(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    app = create_app(settings, clock=ManualClock())
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, app.state.services


@pytest.fixture
async def limited(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Services, Tenant]]:
    async for client, services in serve(Settings(database_url=database_url, **TIGHT)):
        yield client, services, await make_tenant(services, "Limited")


async def test_octeth_event_track_and_properties_have_their_own_limits(
    limited: tuple[httpx.AsyncClient, Services, Tenant],
) -> None:
    client, _, tenant = limited
    answers = [
        await client.post("/api/v1/event", json={"APIKey": tenant.key, "Event": "x"})
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == "3;w=60"
    assert answers[0].headers["RateLimit"].startswith("limit=3, remaining=2, reset=")
    assert answers[2].headers["RateLimit"].startswith("limit=3, remaining=0, reset=")
    refused = answers[3]
    assert refused.json()["Errors"][0]["Code"] == 19
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    properties = await client.get(
        "/api/v1/website_events.properties", params={"APIKey": tenant.key, "ListID": 1}
    )
    assert properties.status_code != 429  # a bucket of its own
    again = await client.get(
        "/api.php",
        params={"APIKey": tenant.key, "Command": "website_events.properties", "ListID": 1},
    )
    assert again.status_code == 429


async def test_activecampaign_v3_and_trackcmp_limits(
    limited: tuple[httpx.AsyncClient, Services, Tenant],
) -> None:
    client, services, tenant = limited
    statuses = [
        (await client.get("/api/3/eventTracking", headers={"Api-Token": tenant.key})).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    refused = await client.get("/api/3/eventTracking", headers={"Api-Token": tenant.key})
    assert refused.json()["errors"][0]["title"] == "Too Many Requests"
    account = await services.db.query(accounts.get_account, tenant.id)
    form = {
        "actid": account.actid,
        "key": services.keyring.open(account.sealed_event_key),
        "event": "x",
    }
    spawned = [(await client.post("/event", data=form)) for _ in range(3)]
    assert [s.status_code for s in spawned] == [200, 200, 429]  # per client address
    assert spawned[2].json()["success"] == 0


async def test_native_and_fluentcrm_limits_per_key(
    limited: tuple[httpx.AsyncClient, Services, Tenant],
) -> None:
    client, _, tenant = limited
    statuses = [
        (await client.get("/v1/account", headers=tenant.headers)).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    refused = await client.get("/v1/account", headers=tenant.headers)
    assert refused.json()["error"]["code"] == "rate_limited"
    fluent = [
        await client.get("/wp-json/fluent-crm/v2/subscribers", auth=("wp", tenant.key))
        for _ in range(3)
    ]
    assert [f.status_code for f in fluent] == [200, 200, 429]
    assert fluent[2].json()["code"] == "rest_too_many_requests"


async def test_redis_shares_the_counters_between_processes(database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        redis_url="redis://127.0.0.1:6379/0",
        redis_key_prefix=f"trackbook-test-{uuid.uuid4().hex}",
        **(TIGHT | {"rate_limit_native": "4/minute"}),
    )
    async for first, services in serve(settings):
        tenant = await make_tenant(services, "Shared")
        async for second, _ in serve(settings):
            answers = []
            for client in (first, second, first, second, first):
                answers.append(
                    (await client.get("/v1/account", headers=tenant.headers)).status_code
                )
    assert answers == [200, 200, 200, 200, 429]


async def test_an_unreachable_redis_lets_requests_through(database_url: str) -> None:
    settings = Settings(database_url=database_url, redis_url="redis://127.0.0.1:1/0", **TIGHT)
    async for client, services in serve(settings):
        tenant = await make_tenant(services, "No Redis")
        answer = await client.get("/v1/account", headers=tenant.headers)
    assert answer.status_code == 200
    assert "RateLimit" not in answer.headers
