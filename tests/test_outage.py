"""PostgreSQL made unreachable by cutting a TCP proxy between Trackbook and it (the
machine's PostgreSQL itself is never stopped): ingest answers 503 with Retry-After,
/readyz fails, and once the proxy is back the same process serves again with nothing
acknowledged lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager

from tests.support import (
    UNLIMITED,
    ManualClock,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    make_tenant,
    require_postgres,
)
from trackbook.app import create_app
from trackbook.db.engine import Database
from trackbook.db.migrate import upgrade
from trackbook.db.tables import events
from trackbook.settings import Settings


class Proxy:
    """Forwards a local port to PostgreSQL until cut; cutting drops every connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", 5432)
        self.pipes |= {writer, upstream_writer}

        async def pump(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    target.write(data)
                    await target.drain()
            target.close()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for pipe in self.pipes:
            pipe.transport.abort()
        self.pipes.clear()
        await self.server.wait_closed()


@pytest.fixture
def database(backend: str) -> Iterator[str]:
    if backend != "postgresql":
        pytest.skip("a network outage is PostgreSQL's; SQLite is a file")
    require_postgres()
    name, url = create_postgres_database()
    upgrade(url)
    yield name
    drop_postgres_database(name)


async def test_cut_network_to_postgres_is_503_then_recovers_without_loss(database: str) -> None:
    port = free_port()
    proxy = Proxy(port)
    await proxy.open()
    url = f"postgresql+asyncpg://root@127.0.0.1:{port}/{database}"
    app = create_app(Settings(database_url=url, **UNLIMITED), clock=ManualClock())
    acknowledged = 0
    async with LifespanManager(app):
        tenant = await make_tenant(app.state.services)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def track(n: int) -> httpx.Response:
                return await client.post(
                    "/v1/track",
                    headers=tenant.headers,
                    json={"event": "x", "contact": {"email": "o@x.io"}, "message_id": f"o-{n}"},
                )

            assert (await track(1)).status_code == 201
            acknowledged += 1
            await proxy.cut()
            down = await track(2)
            ready = await client.get("/readyz")
            assert down.status_code == 503, down.text
            assert down.headers["Retry-After"] == "5"
            assert ready.status_code == 503
            await proxy.open()
            for n in (2, 3):  # the client retries what was refused
                back = await track(n)
                assert back.status_code == 201, back.text
                acknowledged += 1
            assert (await client.get("/readyz")).status_code == 200
    await proxy.cut()
    direct = Database(f"postgresql+asyncpg://root@127.0.0.1:5432/{database}")
    try:
        async with direct.read() as conn:
            stored = await conn.scalar(sa.select(sa.func.count()).select_from(events))
    finally:
        await direct.dispose()
    assert stored == acknowledged == 3
