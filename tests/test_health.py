"""Health checks, and what clients see when storage is unavailable."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager

from tests.support import (
    ManualClock,
    Tenant,
    create_postgres_database,
    drop_postgres_database,
    make_tenant,
    require_postgres,
)
from trackbook.app import create_app
from trackbook.db.migrate import upgrade
from trackbook.db.tables import events
from trackbook.services import Services
from trackbook.settings import Settings


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}


async def test_unreachable_sqlite_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/missing/dir/trackbook.db")
    app = create_app(settings)
    threads_before = set(threading.enumerate())
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/readyz")
            tracked = await client.post(
                "/v1/track",
                headers={"Authorization": "Bearer tb_live_abcdefgh12345678901234567890"},
                json={"event": "x", "contact": {"email": "a@x.io"}},
            )
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == "5"
    assert tracked.status_code == 503
    assert tracked.headers["Retry-After"] == "5"
    assert tracked.json()["error"]["code"] == "storage_unavailable"
    # aiosqlite stops the thread of a connection that failed to open without waiting
    # for it, and the thread then answers on this test's event loop: closed by then on
    # a slow machine, which pytest reports against the next test
    deadline = time.monotonic() + 10
    while any(thread.is_alive() for thread in set(threading.enumerate()) - threads_before):
        assert time.monotonic() < deadline, "the failed connections' threads still run"
        await asyncio.sleep(0.01)


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database this test may cut off."""
    require_postgres()
    name, url = create_postgres_database()
    upgrade(url)
    yield name, url
    drop_postgres_database(name)


async def test_postgres_going_away_mid_traffic_is_503_and_nothing_is_acknowledged(
    own_postgres: tuple[str, str],
) -> None:
    name, url = own_postgres
    app = create_app(Settings(database_url=url), clock=ManualClock())
    services: Services = app.state.services
    async with LifespanManager(app):
        tenant: Tenant = await make_tenant(services)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = {"event": "x", "contact": {"email": "a@x.io"}}
            assert (
                await client.post("/v1/track", headers=tenant.headers, json=body)
            ).status_code == 201
            admin = await asyncpg.connect("postgresql://root@127.0.0.1:5432/test")
            try:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                down = await client.post("/v1/track", headers=tenant.headers, json=body)
                ready = await client.get("/readyz")
            finally:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                await admin.close()
            assert down.status_code == 503, down.text
            assert down.headers["Retry-After"] == "5"
            assert ready.status_code == 503
            back = await client.post("/v1/track", headers=tenant.headers, json=body)
            assert back.status_code == 201
        async with services.db.read() as conn:
            stored = await conn.scalar(sa.select(sa.func.count()).select_from(events))
    assert stored == 2
