"""Test helpers: a settable clock, database creation, account factories, a served CLI."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
import uvicorn
from starlette.types import ASGIApp

from trackbook.accounts import service as accounts
from trackbook.keyring import new_key
from trackbook.services import Services
from trackbook.settings import RATE_LIMITS

POSTGRES_ADMIN_DSN = "postgresql://root@127.0.0.1:5432/test"
SERVER_KEY = new_key()
"""The server key of every app, CLI run and worker of a test session on its databases."""
KEY = re.compile(r"tb_live_[A-Za-z0-9]{40}")
"""A secret API key as Trackbook prints it."""


class ManualClock:
    """The real time, until a test pins it with set() or moves it with advance()."""

    def __init__(self) -> None:
        self.pinned: datetime | None = None

    def now(self) -> datetime:
        return self.pinned or datetime.now(UTC)

    def set(self, moment: datetime) -> None:
        self.pinned = moment

    def advance(self, delta: timedelta) -> None:
        self.pinned = self.now() + delta


def postgres_reachable() -> bool:
    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def require_postgres() -> None:
    """Skips the test when PostgreSQL is not running here; under CI, fails it."""
    if postgres_reachable():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("PostgreSQL at 127.0.0.1:5432 is unreachable; under CI that is a failure")
    pytest.skip("PostgreSQL at 127.0.0.1:5432 is unreachable")


def create_postgres_database() -> tuple[str, str]:
    """A new empty database; returns (name, SQLAlchemy URL)."""
    name = f"tb_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return name, f"postgresql+asyncpg://root@127.0.0.1:5432/{name}"


def drop_postgres_database(name: str) -> None:
    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


@dataclass(frozen=True)
class Tenant:
    """An account with a live API key, as a test client presents it."""

    id: int
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_tenant(services: Services, name: str = "Acme") -> Tenant:
    async with services.db.transaction() as conn:
        now = datetime.now(UTC)
        account = await accounts.create_account(conn, name, now=now, keyring=services.keyring)
        issued = await accounts.create_key(conn, account.id, now=now, name="tests")
    return Tenant(account.id, issued.secret)


def nested_json(depth: int) -> str:
    """JSON text of an object nested `depth` deep (json.dumps itself fails past about
    1,000, and orjson past 254)."""
    return '{"a":' * (depth - 1) + '{"leaf":1}' + "}" * (depth - 1)


UNLIMITED = dict.fromkeys(RATE_LIMITS, "1000000/second")
"""Tests of everything but the limits themselves send faster than any vendor allows."""


def free_port() -> int:
    """A port nothing listens on now, for a server the test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """`app` served over HTTP by uvicorn in this event loop; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def lock_waits_reach(services: Services, count: int) -> bool:
    """Whether, within a few seconds, `count` statements of this PostgreSQL database
    wait on a lock. Each look is a transaction of its own: within one, pg_stat_activity
    keeps its first snapshot."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()"
    )
    for _ in range(500):
        async with services.db.read() as conn:
            if await conn.scalar(query) == count:
                return True
        await asyncio.sleep(0.01)
    return False


@contextmanager
def serving(
    url: str, port: int, cwd: Path, *options: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Runs `trackbook serve` until it is up; yields what it printed by then."""
    with subprocess.Popen(
        ["trackbook", "serve", "--port", str(port), *options],
        env={**os.environ, "TRACKBOOK_DATABASE_URL": url, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    ) as server:
        assert server.stdout is not None
        lines: list[str] = []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = server.stdout.readline()
                if not line:
                    pytest.fail("trackbook serve exited:\n" + "".join(lines))
                lines.append(line)
                if "Uvicorn running on" in line:  # it listens only after start-up
                    break
            else:
                pytest.fail("trackbook serve did not start:\n" + "".join(lines))
            # keep reading what it logs: a full pipe would block the server mid-request
            threading.Thread(target=server.stdout.read, daemon=True).start()
            yield "".join(lines)
        finally:
            server.terminate()
            server.wait(timeout=30)
