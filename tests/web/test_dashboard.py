"""What a marketer does in the dashboard, in Debian's chromium."""

from __future__ import annotations

import re
from typing import Any

import httpx
import sqlalchemy as sa
from playwright.async_api import Browser, expect

from tests.web.conftest import PASSWORD, WIDTHS, Live, screenshot, signed_in
from trackbook.accounts import service as accounts

PAGES = {
    "overview": "/",
    "contacts": "/contacts",
    "events": "/events",
    "segments": "/segments",
    "automations": "/automations",
    "settings": "/settings",
    "dropped": "/dropped",
}


async def test_events_from_every_dialect_on_the_contact_timeline(
    browser: Browser, live: Live
) -> None:
    key = live.tenant.key
    async with live.api() as api:
        created = await api.post(
            "/wp-json/fluent-crm/v2/subscribers",
            auth=("wp", key),
            json={"email": "ada@example.com", "first_name": "Ada"},
        )
        assert created.status_code == 200, created.text
        fluent = await api.post(
            "/wp-json/fluent-crm/v2/subscribers/track-event",
            auth=("wp", key),
            json={"email": "ada@example.com", "event_key": "webinar", "title": "Joined"},
        )
        octeth = await api.post(
            "/api/v1/event",
            json={"APIKey": key, "Event": "pricing_viewed", "Email": "ada@example.com"},
        )
        account = await live.services.db.query(accounts.get_account, live.tenant.id)
        trackcmp = await api.post(
            "/event",
            data={
                "actid": account.actid,
                "key": live.services.keyring.open(account.sealed_event_key),
                "event": "file download request",
                "eventdata": "https://example.com/guide.pdf",
                "visit[email]": "ada@example.com",
            },
        )
    assert (fluent.status_code, octeth.status_code, trackcmp.status_code) == (200, 200, 200)

    page = await signed_in(browser, live)
    await page.get_by_label("Search by email or external id").fill("ada@")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name="ada@example.com").click()
    timeline = page.locator("#timeline tbody tr")
    # Octeth records the first sight of an email as an identify event of its own
    await expect(timeline).to_have_count(4)
    rows = await timeline.all_inner_texts()
    assert "file download request" in rows[0]
    assert "activecampaign" in rows[0]
    assert "https://example.com/guide.pdf" in rows[0]
    assert "pricing_viewed" in rows[1]
    assert "octeth" in rows[1]
    assert "identify" in rows[2]
    assert "webinar" in rows[3]
    assert "fluentcrm" in rows[3]
    utc = await timeline.first.locator("time").first.get_attribute("title")
    assert utc is not None
    assert utc.endswith("UTC")
    await expect(page.get_by_role("heading", name="Event counters")).to_be_visible()

    for size, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await screenshot(page, "contact", size)
        for name, path in PAGES.items():
            await page.goto(live.base_url + path)
            await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{name} scrolls sideways at {width}px"
            await screenshot(page, name, size)
    await page.goto(live.base_url + "/")
    await expect(page.locator("svg.chart rect")).to_have_count(30)


async def test_tracking_off_drops_a_trackcmp_event_and_shows_it(
    browser: Browser, live: Live
) -> None:
    page = await signed_in(browser, live)
    await page.goto(f"{live.base_url}/settings")
    await page.get_by_label("Record events").uncheck()
    await page.get_by_role("button", name="Save tracking settings").click()
    await expect(page.get_by_label("Record events")).not_to_be_checked()
    account = await live.services.db.query(accounts.get_account, live.tenant.id)
    assert account.tracking_enabled is False
    async with live.api() as api:
        contact = await api.post(
            "/v1/contacts",
            headers={"Authorization": f"Bearer {live.tenant.key}"},
            json={"email": "off@example.com"},
        )
        assert contact.status_code in (200, 201)
        spawned = await api.post(
            "/event",
            data={
                "actid": account.actid,
                "key": live.services.keyring.open(account.sealed_event_key),
                "event": "signup",
                "visit[email]": "off@example.com",
            },
        )
        assert spawned.json() == {"success": 1, "message": "Event spawned"}
        events = await api.get(
            f"/v1/contacts/{contact.json()['id']}/events",
            headers={"Authorization": f"Bearer {live.tenant.key}"},
        )
        assert events.json()["data"] == []
    await page.get_by_role("link", name="Dropped events").click()
    dropped = page.locator("#dropped tbody tr")
    await expect(dropped).to_have_count(1)
    text = await dropped.first.inner_text()
    assert "activecampaign" in text
    assert "tracking" in text


async def test_segment_built_in_the_form_shows_its_count(browser: Browser, live: Live) -> None:
    headers = {"Authorization": f"Bearer {live.tenant.key}"}
    async with live.api() as api:
        for email, purchases in (("a@example.com", 3), ("b@example.com", 1), ("c@example.com", 4)):
            for _ in range(purchases):
                tracked = await api.post(
                    "/v1/track",
                    headers=headers,
                    json={"event": "purchase", "contact": {"email": email}},
                )
                assert tracked.status_code == 201
    page = await signed_in(browser, live)
    await page.get_by_role("link", name="Segments").click()
    await page.get_by_label("Name").fill("Repeat buyers")
    await page.get_by_label("Performed the event").fill("purchase")
    await page.get_by_label("Comparison").select_option(">=")
    await page.get_by_label("Count").fill("3")
    await page.get_by_label("Within the last N days").fill("30")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#preview-count")).to_have_text("2")
    await expect(page.get_by_role("status").get_by_role("link")).to_have_count(2)
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_text("Saved the segment “Repeat buyers”.")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("Repeat buyers"))
    await expect(row.locator("td.num")).to_have_text("2")


async def test_created_key_works_and_a_revoked_key_is_refused(browser: Browser, live: Live) -> None:
    page = await signed_in(browser, live)
    await page.goto(f"{live.base_url}/settings")
    await page.get_by_label("New key name").fill("website")
    await page.get_by_role("button", name="Create API key").click()
    secret = await page.locator("#new-key").inner_text()
    assert secret.startswith("tb_live_")
    await page.goto(f"{live.base_url}/settings")
    await expect(page.locator("#new-key")).to_have_count(0)  # shown once

    async with live.api() as api:
        account = await api.get("/v1/account", headers={"Authorization": f"Bearer {secret}"})
        assert account.status_code == 200
        await page.goto(f"{live.base_url}/settings")
        row = page.get_by_role("row", name=re.compile("website"))
        await row.get_by_role("button", name=re.compile("Revoke")).click()
        await expect(page.get_by_role("row", name=re.compile("website"))).to_contain_text("revoked")
        refused = await api.get("/v1/account", headers={"Authorization": f"Bearer {secret}"})
        assert refused.status_code == 401


async def test_lists_created_and_deleted_on_the_contacts_page(browser: Browser, live: Live) -> None:
    page = await signed_in(browser, live)
    for name in ("Newsletter", "Customers"):
        await page.get_by_label("New list").fill(name)
        await page.get_by_role("button", name="Create list").click()
        await expect(page.get_by_role("row", name=re.compile(name))).to_have_count(1)
    async with live.api() as api:
        listed = await api.get("/v1/lists", headers=live.tenant.headers)
        ids = {item["name"]: item["id"] for item in listed.json()["data"]}
        segment = await api.post(
            "/v1/segments",
            headers=live.tenant.headers,
            json={"name": "Buyers", "definition": {"list": {"id": ids["Customers"]}}},
        )
        assert segment.status_code == 201, segment.text

    await page.get_by_role("button", name="Delete list Newsletter").click()
    await expect(page.get_by_role("row", name=re.compile("Newsletter"))).to_have_count(0)
    await page.get_by_role("button", name="Delete list Customers").click()
    await expect(page.get_by_role("alert")).to_contain_text(
        f"list {ids['Customers']} is used by segment {segment.json()['id']} (Buyers)"
    )
    await expect(page.get_by_role("row", name=re.compile("Customers"))).to_have_count(1)
    async with live.api() as api:
        listed = await api.get("/v1/lists", headers=live.tenant.headers)
        assert [item["name"] for item in listed.json()["data"]] == ["Customers"]


async def test_sign_out_and_pages_without_a_session(browser: Browser, live: Live) -> None:
    anonymous = await browser.new_page()
    for path in PAGES.values():
        await anonymous.goto(live.base_url + path)
        assert anonymous.url.startswith(f"{live.base_url}/signin?next="), path
    await anonymous.get_by_label("Email").fill(live.email)
    await anonymous.get_by_label("Password").fill("not the password")
    await anonymous.get_by_role("button", name="Sign in").click()
    await expect(anonymous.get_by_role("alert")).to_have_text("Wrong email or password.")

    page = await signed_in(browser, live)
    cookie = next(c for c in await page.context.cookies() if c["name"] == "tb_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(re.compile(r"/signin"))
    await page.goto(f"{live.base_url}/settings")
    assert "/signin?next=/settings" in page.url


async def sign_in(api: httpx.AsyncClient, live: Live) -> None:
    """Signs `api` in as the live tenant's user, as the sign-in form does."""
    form = await api.get("/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    signed = await api.post(
        "/signin",
        data={"csrf": token[1], "next": "/", "email": live.email, "password": PASSWORD},
    )
    assert signed.status_code == 303


async def test_forms_without_the_csrf_token_are_refused(live: Live) -> None:
    async with live.api() as api:
        await sign_in(api, live)
        forged = await api.post("/settings/tracking", data={"tracking": "off", "csrf": "forged"})
        assert forged.status_code == 403
        account = await live.services.db.query(accounts.get_account, live.tenant.id)
        assert account.tracking_enabled is True


async def test_a_webhook_url_whose_host_cannot_be_read_is_a_form_error(live: Live) -> None:
    async with live.api() as api:
        await sign_in(api, live)
        for url in ("http://xn--a/", "http://xn--zz-/", "http://xn--ls8h.la/"):
            form = await api.get("/settings")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert token is not None
            added = await api.post("/settings/webhooks", data={"csrf": token[1], "url": url})
            assert added.status_code == 200, added.text
            assert re.search(r'role="alert">url [^<]* is not a URL<', added.text), url
    async with live.api() as api:
        listed = await api.get("/v1/webhooks", headers=live.tenant.headers)
        assert listed.json()["data"] == []


async def test_empty_overview_shows_a_ready_curl_and_times_follow_the_time_zone(
    browser: Browser, live: Live
) -> None:
    page = await signed_in(browser, live)
    await page.goto(f"{live.base_url}/")
    curl = page.locator("pre.curl")
    await expect(curl).to_contain_text(f"curl -X POST {live.base_url}/v1/track")
    await expect(page.get_by_text("No events yet: send one with")).to_be_visible()

    await page.goto(f"{live.base_url}/settings")
    await page.get_by_label("Time zone").fill("Asia/Tokyo")
    await page.get_by_role("button", name="Save tracking settings").click()
    async with live.api() as api:
        tracked = await api.post(
            "/v1/track",
            headers={"Authorization": f"Bearer {live.tenant.key}"},
            json={
                "event": "signup",
                "contact": {"email": "tz@example.com"},
                "timestamp": "2026-11-20T23:30:00Z",
            },
        )
        assert tracked.status_code == 201
    await page.goto(f"{live.base_url}/contacts/{tracked.json()['contact_id']}")
    occurred = page.locator("#timeline tbody tr").first.locator("time").first
    await expect(occurred).to_have_text("2026-11-21 08:30:00 JST")
    await expect(occurred).to_have_attribute("title", "2026-11-20T23:30:00Z UTC")


async def test_signing_in_with_the_keyboard_alone(browser: Browser, live: Live) -> None:
    page = await browser.new_page()
    await page.goto(f"{live.base_url}/signin")
    await expect(page.get_by_label("Email")).to_be_focused()  # autofocus on arrival
    await page.keyboard.type(live.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type("correct horse battery")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{live.base_url}/")
    await page.wait_for_load_state("load")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Overview")).to_be_focused()


async def test_a_forged_session_cookie_is_a_sign_in_not_an_error(live: Live) -> None:
    async with live.api() as api:
        for cookie in ("²³.x", "12.", "not-a-session", "9" * 40 + ".x"):
            raw = f"tb_session={cookie}".encode()
            response = await api.get("/contacts", headers={"Cookie": raw})
            assert response.status_code == 303, cookie
            assert response.headers["location"].startswith("/signin")


async def test_the_events_page_reads_names_and_properties_in_bounded_queries_and_pages(
    live: Live,
) -> None:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engines = {live.services.db.reader.sync_engine, live.services.db.writer.sync_engine}
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", count)

    async def track_names(api: httpx.AsyncClient, names: range) -> None:
        events = [
            {
                "event": f"event-{n:03}",
                "contact": {"email": "catalog@example.com"},
                "properties": {f"p{n}-a": 1, f"p{n}-b": 2},
            }
            for n in names
        ]
        response = await api.post(
            "/v1/batch",
            headers={"Authorization": f"Bearer {live.tenant.key}"},
            json={"events": events},
        )
        assert response.status_code == 200, response.text

    async def events_page(api: httpx.AsyncClient, query: str = "") -> tuple[str, int]:
        statements.clear()
        response = await api.get(f"/events{query}")
        assert response.status_code == 200, response.text
        return response.text, len(statements)

    try:
        async with live.api() as api:
            await sign_in(api, live)
            await track_names(api, range(30))
            first, queries_with_30 = await events_page(api)
            await track_names(api, range(30, 300))
            again, queries_with_300 = await events_page(api)
            last, _ = await events_page(api, "?page=12")
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", count)
    assert queries_with_300 == queries_with_30 <= 6
    assert "Page 1 of 2" in first
    assert "Page 1 of 12" in again
    shown = re.findall(r">(event-\d+)</a>", again)
    assert shown == [f"event-{n:03}" for n in range(25)]
    assert "p0-a, p0-b" in again
    assert "Page 12 of 12" in last
    assert re.findall(r">(event-\d+)</a>", last) == [f"event-{n:03}" for n in range(275, 300)]
    assert "p299-a, p299-b" in last
