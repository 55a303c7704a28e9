"""The dashboard in a real browser: Debian's chromium driven by Playwright, against the
app served over HTTP by uvicorn in the test's event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright
from starlette.types import ASGIApp

from tests.support import ManualClock, Tenant, free_port, make_tenant
from trackbook.accounts import users
from trackbook.app import create_app
from trackbook.services import Services
from trackbook.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PASSWORD = "correct horse battery"
WIDTHS = {"phone": 375, "desktop": 1280}


def chromium_path() -> str:
    """Debian's chromium, installed here when missing (browsers cannot be downloaded)."""
    found = shutil.which("chromium")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            check=False,
            capture_output=True,
            timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("chromium")
    if found is None:
        message = "Debian's chromium is not installed and could not be installed here"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    return chromium_path()


@dataclass
class Live:
    base_url: str
    services: Services
    tenant: Tenant
    email: str

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30)


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[int]:
    """`app` served by uvicorn on 127.0.0.1 in the test's event loop; yields the port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def live(settings: Settings, clock: ManualClock) -> AsyncIterator[Live]:
    app = create_app(settings, clock=clock)
    async with served(app) as port:
        services: Services = app.state.services
        tenant = await make_tenant(services.db, "Acme Marketing")
        email = f"marketer{tenant.id}@example.com"
        await services.db.write(users.create_user, tenant.id, email, PASSWORD, now=clock.now())
        yield Live(f"http://127.0.0.1:{port}", services, tenant, email)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


async def signed_in(browser: Browser, live: Live, *, width: int = 1280) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": 900})
    await page.goto(f"{live.base_url}/contacts")
    assert "/signin" in page.url
    await page.get_by_label("Email").fill(live.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{live.base_url}/contacts")
    return page


async def screenshot(page: Page, name: str, size: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}-{size}.png", full_page=True)
