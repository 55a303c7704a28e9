"""The browser tracker /t.js: how Trackbook serves it, and what it records from a page
of another site in Debian's chromium."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route
from playwright.async_api import Request as BrowserRequest
from starlette import routing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tests.support import free_port, served
from tests.web.conftest import Live
from trackbook.accounts import service as accounts
from trackbook.web.tracker import SOURCE

T = TypeVar("T")

MINIFIED_LIMIT = 5000  # "under 5 KB", read strictly


async def test_t_js_is_minified_cacheable_and_public(client: httpx.AsyncClient) -> None:
    served = await client.get("/t.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/javascript")
    assert served.headers["cache-control"].startswith("public, max-age=")
    assert int(served.headers["cache-control"].split("max-age=")[1]) >= 600
    assert served.headers["cross-origin-resource-policy"] == "cross-origin"
    # none of the dashboard's page headers, which would stop other sites embedding it
    assert "content-security-policy" not in served.headers
    assert "x-frame-options" not in served.headers
    assert len(served.content) < MINIFIED_LIMIT
    assert len(served.content) < len(SOURCE.read_bytes()) * 3 / 4
    assert b"/segment/v1/batch" in served.content
    assert b"/*" not in served.content

    etag = served.headers["etag"]
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        revalidated = await client.get("/t.js", headers={"If-None-Match": if_none_match})
        assert revalidated.status_code == 304
        assert revalidated.content == b""
        assert revalidated.headers["etag"] == etag
        assert revalidated.headers["cache-control"] == served.headers["cache-control"]
    changed = await client.get("/t.js", headers={"If-None-Match": '"an-older-version"'})
    assert changed.status_code == 200
    assert changed.content == served.content

    head = await client.head("/t.js")
    assert head.status_code == 200
    assert head.headers["etag"] == etag


UTM = (
    "utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale&utm_term=crm&utm_content=hero"
)
READY = "window.trackbook && !Array.isArray(window.trackbook)"


@dataclass
class Site:
    """Another web site whose pages embed Trackbook's /t.js with a publishable key that
    accepts `origin` and not `elsewhere` (the same pages on another port)."""

    trackbook: str
    origin: str = ""
    elsewhere: str = ""
    key: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    """More attributes of the script tag, such as data-consent."""
    head: str = ""
    """HTML before the tag, such as the queue stub."""

    def html(self, title: str) -> str:
        tag = {"data-key": self.key, **self.attributes}
        attributes = "".join(f' {name}="{escape(value)}"' for name, value in tag.items())
        return (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
            f'{self.head}<script async src="{self.trackbook}/t.js"{attributes}></script>'
            f'</head><body><a href="/pricing?{escape(UTM)}">Pricing</a></body></html>'
        )


@pytest.fixture
async def site(live: Live) -> AsyncIterator[Site]:
    site = Site(live.base_url)

    async def page(request: Request) -> HTMLResponse:
        title = "Pricing" if request.url.path == "/pricing" else "Home"
        return HTMLResponse(site.html(title))

    pages = Starlette(routes=[routing.Route("/{path:path}", page)])
    async with served(pages) as base_url, served(pages) as other_url:
        # localhost, not Trackbook's 127.0.0.1: another site, as browsers count them
        # localhost, where Trackbook is 127.0.0.1: another site, not only another port
        site.origin = base_url.replace("127.0.0.1", "localhost")
        site.elsewhere = other_url.replace("127.0.0.1", "localhost")
        async with live.services.db.transaction() as conn:
            issued = await accounts.create_key(
                conn,
                live.tenant.id,
                now=datetime.now(UTC),
                name="website",
                kind=accounts.KeyKind.PUBLISHABLE,
                origins=[site.origin],
            )
        site.key = issued.secret
        yield site


@dataclass
class Visit:
    """A page in chromium and every request its tracker made to Trackbook's batch route."""

    page: Page
    sent: list[BrowserRequest] = field(default_factory=list)

    async def call(self, script: str) -> None:
        """Runs `script` on the page, then waits until the tracker's queue has been sent
        and answered."""
        await self.page.evaluate(script)
        await self.page.evaluate("trackbook.flush()")

    async def visitor_id(self) -> str | None:
        cookies = await self.page.context.cookies()
        return next((c["value"] for c in cookies if c["name"] == "tb_vid"), None)

    async def stored(self) -> dict[str, str]:
        found: dict[str, str] = await self.page.evaluate("({...localStorage})")
        return found


async def visit_page(context: BrowserContext, url: str) -> Visit:
    """`url` opened in a new tab of `context`, once its tracker has loaded."""
    visit = Visit(await context.new_page())
    visit.page.on(
        "request",
        lambda request: visit.sent.append(request) if "/segment/" in request.url else None,
    )
    await visit.page.goto(url)
    await visit.page.wait_for_function(READY)
    return visit


async def until(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Polls `probe` until it finds something, for at most 30 seconds."""
    deadline = time.monotonic() + 30
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not found within 30 s: {what}")
        await asyncio.sleep(0.1)


async def contacts(api: httpx.AsyncClient, live: Live) -> list[dict[str, Any]]:
    listed = await api.get("/v1/contacts", headers=live.tenant.headers)
    assert listed.status_code == 200, listed.text
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


async def timeline(api: httpx.AsyncClient, live: Live, contact_id: int) -> list[dict[str, Any]]:
    events = await api.get(
        f"/v1/contacts/{contact_id}/events", params={"limit": 1000}, headers=live.tenant.headers
    )
    assert events.status_code == 200, events.text
    data: list[dict[str, Any]] = events.json()["data"]
    return data


async def visitor_timeline(
    api: httpx.AsyncClient, live: Live, visitor_id: str
) -> tuple[int, list[dict[str, Any]]] | None:
    """The contact that the anonymous visitor id names, and its events."""
    for contact in await contacts(api, live):
        details = await api.get(f"/v1/contacts/{contact['id']}", headers=live.tenant.headers)
        if visitor_id in details.json()["aliases"]:
            return contact["id"], await timeline(api, live, contact["id"])
    return None


def page_view(events: list[dict[str, Any]], url: str) -> dict[str, Any] | None:
    return next((e for e in events if e["properties"].get("url") == url), None)


def own_properties(event: dict[str, Any]) -> dict[str, Any]:
    """The properties the page gave, without the context the Segment dialect keeps."""
    return {name: value for name, value in event["properties"].items() if name != "$context"}


def named(events: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((e for e in events if e["event"] == name), None)


async def test_page_views_then_identify_put_the_visit_on_the_contact(
    browser: Browser, live: Live, site: Site
) -> None:
    home = f"{site.origin}/"
    pricing = f"{site.origin}/pricing?{UTM}"
    visit = await visit_page(await browser.new_context(), home)
    await visit.page.get_by_role("link", name="Pricing").click()
    await visit.page.wait_for_url(pricing)
    await visit.page.wait_for_function(READY)
    visitor_id = await visit.visitor_id()
    assert visitor_id is not None

    async with live.api() as api:

        async def visitor_saw_pricing() -> tuple[int, dict[str, Any]] | None:
            found = await visitor_timeline(api, live, visitor_id)
            viewed = found and page_view(found[1], pricing)
            return (found[0], viewed) if found and viewed else None

        anonymous_id, viewed = await until(visitor_saw_pricing, "the visitor's page view")
        anonymous = await api.get(f"/v1/contacts/{anonymous_id}", headers=live.tenant.headers)
        assert anonymous.json()["email"] is None
        assert viewed["properties"]["referrer"] == home
        assert viewed["properties"]["title"] == "Pricing"
        assert viewed["properties"]["path"] == "/pricing"
        assert viewed["event"] == "Page Viewed"
        campaign = {
            "source": "newsletter",
            "medium": "email",
            "name": "spring-sale",
            "term": "crm",
            "content": "hero",
        }
        assert viewed["properties"]["$context"]["campaign"] == campaign
        assert viewed["properties"]["utm_campaign"] == "spring-sale"
        assert viewed["properties"]["$context"]["library"]["name"] == "trackbook.js"

        await visit.call("trackbook.identify('x@example.com', {first_name: 'Ada'})")

        async def contact_saw_pricing() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
            found = await api.get(
                "/v1/contacts", params={"email": "x@example.com"}, headers=live.tenant.headers
            )
            for contact in found.json()["data"]:
                events = await timeline(api, live, contact["id"])
                if page_view(events, pricing) and page_view(events, home):
                    return contact, events
            return None

        contact, events = await until(contact_saw_pricing, "the page views on x@example.com")
        assert contact["first_name"] == "Ada"
        details = await api.get(f"/v1/contacts/{contact['id']}", headers=live.tenant.headers)
        assert visitor_id in details.json()["aliases"]
        merged = page_view(events, pricing)
        assert merged is not None
        assert merged["id"] == viewed["id"]
        assert [c["id"] for c in await contacts(api, live)] == [contact["id"]]

    cookie = next(c for c in await visit.page.context.cookies() if c["name"] == "tb_vid")
    assert cookie["domain"] == "localhost"
    assert cookie["sameSite"] == "Lax"
    assert not cookie["httpOnly"]
    lifetime = datetime.fromtimestamp(cookie["expires"], UTC) - datetime.now(UTC)
    assert timedelta(days=364) < lifetime <= timedelta(days=366)
    assert visit.sent
    for request in visit.sent:
        assert request.url == f"{live.base_url}/segment/v1/batch"
        assert request.method == "POST"
        assert (await request.all_headers())["content-type"].startswith("text/plain")
        body = orjson.loads(request.post_data_buffer or b"")
        assert body["writeKey"] == site.key
        assert {m["anonymousId"] for m in body["batch"]} == {visitor_id}


async def test_track_and_calls_queued_before_the_script_loaded_arrive(
    browser: Browser, live: Live, site: Site
) -> None:
    site.head = (
        "<script>window.trackbook = window.trackbook || [];"
        'trackbook.push(["track", "Newsletter form seen", {"form": "footer"}]);</script>'
    )
    visit = await visit_page(await browser.new_context(), f"{site.origin}/")
    await visit.call("trackbook.track('Signed up', {plan: 'pro', seats: 3, addons: ['sso']})")
    visitor_id = await visit.visitor_id()
    assert visitor_id is not None

    async with live.api() as api:

        async def tracked() -> list[dict[str, Any]] | None:
            found = await visitor_timeline(api, live, visitor_id)
            events = found[1] if found else []
            done = named(events, "Signed up") and named(events, "Newsletter form seen")
            return events if done else None

        events = await until(tracked, "both events on the visitor")
    signed_up = named(events, "Signed up")
    assert signed_up is not None
    assert own_properties(signed_up) == {"plan": "pro", "seats": 3, "addons": ["sso"]}
    seen = named(events, "Newsletter form seen")
    assert seen is not None
    assert own_properties(seen) == {"form": "footer"}
    assert page_view(events, f"{site.origin}/") is not None


@pytest.mark.parametrize(
    "signal", ["doNotTrack", "globalPrivacyControl"], ids=["do-not-track", "gpc"]
)
async def test_do_not_track_sends_and_stores_nothing(
    browser: Browser, live: Live, site: Site, signal: str
) -> None:
    value = '"1"' if signal == "doNotTrack" else "true"
    # the visitor's browser setting, as the page sees it
    setting = f"Object.defineProperty(Navigator.prototype, {signal!r}, {{get: () => {value}}})"
    context = await browser.new_context()
    await context.add_init_script(setting)
    visit = await visit_page(context, f"{site.origin}/")
    await visit.call(
        "trackbook.consent(true); trackbook.track('Signed up', {plan: 'pro'});"
        "trackbook.identify('dnt@example.com'); trackbook.page()"
    )
    assert visit.sent == []
    assert await visit.visitor_id() is None
    assert await visit.stored() == {}
    async with live.api() as api:
        assert await contacts(api, live) == []


async def test_consent_required_sends_nothing_until_consent(
    browser: Browser, live: Live, site: Site
) -> None:
    site.attributes["data-consent"] = "required"
    visit = await visit_page(await browser.new_context(), f"{site.origin}/")
    await visit.call("trackbook.track('Pricing viewed', {tier: 'team'})")
    assert visit.sent == []
    assert await visit.visitor_id() is None
    assert await visit.stored() == {}
    async with live.api() as api:
        assert await contacts(api, live) == []

        await visit.call("trackbook.consent(true)")
        visitor_id = await visit.visitor_id()
        assert visitor_id is not None

        async def consented() -> list[dict[str, Any]] | None:
            found = await visitor_timeline(api, live, visitor_id)
            events = found[1] if found else []
            done = named(events, "Pricing viewed") and page_view(events, f"{site.origin}/")
            return events if done else None

        await until(consented, "what was recorded before consent")
        assert (await visit.stored()).get("tb_consent") == "1"

        # the choice is remembered: the next page is tracked without asking again
        sent_before = len(visit.sent)
        await visit.page.goto(f"{site.origin}/pricing?{UTM}")
        await visit.page.wait_for_function(READY)
        await visit.call("true")
        assert len(visit.sent) > sent_before


async def test_a_page_on_an_origin_the_key_does_not_accept_stores_nothing(
    browser: Browser, live: Live, site: Site
) -> None:
    visit = await visit_page(await browser.new_context(), f"{site.elsewhere}/")
    # Trackbook answers without this origin in Access-Control-Allow-Origin, so the
    # browser fails the request for the page
    refused: list[BrowserRequest] = []
    # a lambda: Playwright cannot wrap a builtin method such as list.append
    visit.page.on("requestfailed", lambda request: refused.append(request))  # noqa: PLW0108
    await visit.call("trackbook.track('Signed up', {plan: 'pro'})")
    assert visit.sent
    assert refused == visit.sent
    async with live.api() as api:
        assert await contacts(api, live) == []


async def test_events_unsent_while_trackbook_is_unreachable_are_retried(
    browser: Browser, live: Live, site: Site
) -> None:
    # the first page posts to a Trackbook that is down: nothing listens on that port
    unreachable = f"http://127.0.0.1:{free_port()}"
    site.attributes["data-endpoint"] = unreachable
    context = await browser.new_context()
    first = await visit_page(context, f"{site.origin}/")
    await first.call("trackbook.track('Offline click', {n: 1})")
    assert first.sent
    assert {request.url for request in first.sent} == {f"{unreachable}/segment/v1/batch"}
    queued = orjson.loads((await first.stored())["tb_queue"])
    assert [m["type"] for m in queued] == ["page", "track"]
    await first.page.close()
    del site.attributes["data-endpoint"]

    # the next page sends them again; its first try fails too, and the page retries
    refused: list[Route] = []

    async def once_unreachable(route: Route) -> None:
        if refused:
            await route.continue_()
        else:
            refused.append(route)
            await route.abort()

    await context.route(f"{live.base_url}/segment/**", once_unreachable)
    visit = await visit_page(context, f"{site.origin}/pricing?{UTM}")
    queued_ids = {message["messageId"] for message in queued}
    async with live.api() as api:
        visitor_id = queued[0]["anonymousId"]

        async def arrived() -> list[dict[str, Any]] | None:
            found = await visitor_timeline(api, live, visitor_id)
            events = found[1] if found else []
            stored = {e["message_id"] for e in events}
            return events if queued_ids <= stored else None

        events = await until(arrived, "the events queued while Trackbook was unreachable")
    offline = named(events, "Offline click")
    assert offline is not None
    assert own_properties(offline) == {"n": 1}
    assert len(refused) == 1
    tries = [
        {message["messageId"] for message in orjson.loads(request.post_data_buffer or b"")["batch"]}
        for request in visit.sent
    ]
    assert len([ids for ids in tries if queued_ids <= ids]) >= 2

    async def sent_everything() -> bool | None:
        return True if "tb_queue" not in await visit.stored() else None

    await until(sent_everything, "an empty queue once Trackbook answered")
