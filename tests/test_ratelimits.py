"""Rate limits: the vendors' limits, their headers, 429 in each dialect's shape, and
counters shared across processes through Redis."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter

from tests.support import SERVER_KEY, UNLIMITED, ManualClock, Tenant, make_tenant
from trackbook.accounts import service as accounts
from trackbook.app import create_app
from trackbook.services import Services
from trackbook.settings import Settings

TIGHT = UNLIMITED | {
    "secret_key": SERVER_KEY,  # the session database's accounts are sealed with it
    "rate_limit_octeth_track": "3/60 seconds",
    "rate_limit_octeth_properties": "1/60 seconds",
    "rate_limit_activecampaign": "2/second",
    "rate_limit_trackcmp_ip": "2/minute",
    "rate_limit_native": "2/minute",
    "rate_limit_fluentcrm": "2/minute",
}


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, clock=ManualClock())
    async with LifespanManager(app):
        yield app


def client_of(app: FastAPI, address: str = "203.0.113.7") -> httpx.AsyncClient:
    """A client of `app` connecting from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def serve(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    async with running(settings) as app, client_of(app) as client:
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


def redis_settings(database_url: str, **limits: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url="redis://127.0.0.1:6379/0",
        redis_key_prefix=f"trackbook-test-{uuid.uuid4().hex}",
        **(TIGHT | limits),
    )


async def test_keys_of_one_account_share_its_limit_and_each_key_has_its_own(
    database_url: str,
) -> None:
    settings = redis_settings(database_url)
    assert settings.redis_url is not None
    async with running(settings) as app, client_of(app) as client:
        services: Services = app.state.services
        tenant = await make_tenant(services, "Two keys")
        async with services.db.transaction() as conn:
            second = await accounts.create_key(
                conn, tenant.id, now=datetime.now(UTC), name="second"
            )
        first_key = tenant.headers
        second_key = {"Authorization": f"Bearer {second.secret}"}

        async def status(headers: dict[str, str]) -> int:
            return (await client.get("/v1/account", headers=headers)).status_code

        assert [await status(first_key), await status(first_key)] == [200, 200]
        assert await status(second_key) == 429  # the account's 2 a minute are used up
        # Each counter's window starts at its own first request, so the account's may
        # roll over while a key's still runs: end the account's window early.
        storage = RedisStorage(
            settings.redis_url.replace("redis://", "async+redis://", 1),
            key_prefix=settings.redis_key_prefix,
        )
        await FixedWindowRateLimiter(storage).clear(
            parse(settings.rate_limit_native), "native", f"account:{tenant.id}"
        )
        storage.bridge.storage.connection_pool.disconnect()
        assert await status(first_key) == 429  # its own 2 a minute are still used up
        assert await status(second_key) == 200


async def test_trackcmp_is_limited_per_actid_from_every_address(database_url: str) -> None:
    limits = {"rate_limit_trackcmp_ip": "100/minute", "rate_limit_trackcmp_actid": "2/minute"}
    async with running(Settings(database_url=database_url, **(TIGHT | limits))) as app:
        services: Services = app.state.services
        tenant, other = await make_tenant(services, "Actid"), await make_tenant(services, "Other")

        async def post_from(address: str, tenant_id: int) -> httpx.Response:
            account = await services.db.query(accounts.get_account, tenant_id)
            key = services.keyring.open(account.sealed_event_key)
            async with client_of(app, address) as browser:
                return await browser.post(
                    "/event", data={"actid": account.actid, "key": key, "event": "x"}
                )

        answers = [
            await post_from(address, tenant.id)
            for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3")
        ]
        another_actid = await post_from("198.51.100.3", other.id)
    assert [a.status_code for a in answers] == [200, 200, 429]  # 1 a minute from each address
    assert answers[2].json()["success"] == 0
    assert answers[0].headers["RateLimit-Policy"] == "2;w=60"
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    assert another_actid.status_code == 200


async def test_segment_past_its_limit_is_a_segment_shaped_429(database_url: str) -> None:
    settings = Settings(database_url=database_url, **(TIGHT | {"rate_limit_segment": "2/minute"}))
    async for client, services in serve(settings):
        tenant = await make_tenant(services, "Segment")
        basic = {"Authorization": "Basic " + base64.b64encode(f"{tenant.key}:".encode()).decode()}
        message = {"userId": "limited", "event": "Limited"}
        answers = [
            await client.post("/segment/v1/track", headers=basic, json=message) for _ in range(2)
        ]
        answers.append(
            await client.post(
                "/segment/v1/batch", json={"writeKey": tenant.key, "batch": [message]}
            )
        )
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == "2;w=60"
    assert answers[1].headers["RateLimit"].startswith("limit=2, remaining=0, reset=")
    refused = answers[2]
    assert set(refused.json()) == {"code", "message"}  # Segment's shape, not the native one
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["message"].startswith("too many requests")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit"].startswith("limit=2, remaining=0, reset=")
