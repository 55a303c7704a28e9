"""Every test that takes `client` runs against SQLite and against PostgreSQL."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from typer.testing import CliRunner

from tests.automations.conftest import receiver  # noqa: F401 - a fixture for every test
from tests.support import (
    SERVER_KEY,
    UNLIMITED,
    ManualClock,
    Tenant,
    create_postgres_database,
    drop_postgres_database,
    make_tenant,
    require_postgres,
)
from trackbook.app import create_app
from trackbook.db.migrate import upgrade
from trackbook.services import Services
from trackbook.settings import Settings

BACKENDS = ["sqlite", "postgresql"]


def _new_database(backend: str, directory: Path) -> tuple[str, Callable[[], None]]:
    """A fresh database of `backend`: its URL and how to remove it."""
    if backend == "sqlite":
        path = directory / "trackbook.db"
        return f"sqlite+aiosqlite:///{path}", lambda: None
    require_postgres()
    name, url = create_postgres_database()
    return url, lambda: drop_postgres_database(name)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per backend, shared by the session: tests keep apart by
    working in accounts of their own, as tenants do."""
    url, remove = _new_database(backend, tmp_path_factory.mktemp(backend))
    upgrade(url)
    yield url
    remove()


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own, not even migrated, for tests of first start-up."""
    url, remove = _new_database(backend, tmp_path)
    yield url
    remove()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Tests drive the worker themselves (services.worker.run_once()) or start it;
    # their webhook receivers listen on 127.0.0.1.
    return Settings(
        database_url=database_url,
        worker_in_process=False,
        webhook_allow_private=True,
        secret_key=SERVER_KEY,
        **UNLIMITED,
    )


@pytest.fixture
async def app(settings: Settings, clock: ManualClock) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=clock)
    async with LifespanManager(application):
        yield application


@pytest.fixture
def services(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://trackbook.test") as client:
        yield client


TenantFactory = Callable[..., Awaitable[Tenant]]


@pytest.fixture
def new_tenant(services: Services) -> TenantFactory:
    async def make(name: str = "Acme") -> Tenant:
        return await make_tenant(services, name)

    return make


@pytest.fixture
async def tenant(new_tenant: TenantFactory) -> Tenant:
    return await new_tenant()


@pytest.fixture
def cli(database_url: str) -> CliRunner:
    """The CLI against the session's database, as an operator runs it: with the server
    key the apps of the session seal with."""
    return CliRunner(
        env={"TRACKBOOK_DATABASE_URL": database_url, "TRACKBOOK_SECRET_KEY": SERVER_KEY}
    )


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collects garbage after each test, so that a connection or file a test leaves
    unclosed fails that test (warnings are errors) and not whichever test the collector
    happens to run in."""
    yield
    gc.collect()
