"""The API reference works offline: Swagger UI and ReDoc in Debian's chromium with every
host but Trackbook unreachable."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, ConsoleMessage, Route, expect

from tests.support import ManualClock, served
from trackbook.app import create_app
from trackbook.settings import Settings

# the control that opens POST /v1/track, in either page, once the spec is rendered
TRACK = re.compile(r"^post \/v1\/track( |$)", re.IGNORECASE)  # Playwright needs \/


@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
async def test_the_api_reference_renders_with_every_other_host_unreachable(
    browser: Browser, settings: Settings, clock: ManualClock, page_path: str
) -> None:
    async with served(create_app(settings, clock=clock)) as base_url:
        page = await browser.new_page()
        elsewhere: list[str] = []

        async def trackbook_only(route: Route) -> None:
            if route.request.url.startswith(f"{base_url}/"):
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort()

        failed: list[str] = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        errors: list[str] = []

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page.on("console", console)
        await page.route("**/*", trackbook_only)
        await page.goto(f"{base_url}{page_path}")

        await expect(page.get_by_role("button", name=TRACK).first).to_be_visible()
        assert elsewhere == []
        assert [url for url in failed if url.startswith(base_url)] == []
        # ReDoc's footer would show its vendor's logo from a CDN; the page's policy stops
        # the browser before any request
        refused = [text for text in errors if "Content Security Policy" in text]
        assert all("cdn.redoc.ly" in text for text in refused), refused
        assert [text for text in errors if text not in refused] == []
