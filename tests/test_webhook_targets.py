"""Webhook targets are checked when they are registered, not only when a message is sent."""

from __future__ import annotations

import httpx
import pytest

from tests.support import Tenant
from trackbook.settings import Settings

PRIVATE_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:8080/hook",
    "http://10.0.0.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://[::ffff:0:7f00:1]/hook",  # IPv4-translated 127.0.0.1
    "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64 of 10.0.0.1
    "http://localhost:9000/hook",  # a name that resolves to loopback
    # the same targets with the trailing dot of an absolute name, and loopback names
    # whether or not this machine's resolver knows them (RFC 6761)
    "http://127.0.0.1./hook",
    "http://localhost./hook",
    "http://localhost.localdomain/hook",
    "http://hooks.localhost/hook",
]
# IDNA labels that do not decode: a URL httpx parses, whose host it cannot read
UNREADABLE_URLS = ["http://xn--a/", "http://xn--zz-/", "http://xn--ls8h.la/"]


@pytest.fixture(params=[False, True], ids=["private-refused", "private-allowed"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": request.param})


async def test_private_targets_are_refused_at_registration_unless_allowed(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    public = await client.post(
        "/v1/webhooks", headers=tenant.headers, json={"url": "https://93.184.215.14/hook"}
    )
    assert public.status_code == 201, public.text
    answers: dict[str, tuple[int, int]] = {}
    for url in PRIVATE_URLS:
        created = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": url})
        changed = await client.patch(
            f"/v1/webhooks/{public.json()['id']}", headers=tenant.headers, json={"url": url}
        )
        answers[url] = (created.status_code, changed.status_code)
        if not settings.webhook_allow_private:
            for answer in (created, changed):
                assert "TRACKBOOK_WEBHOOK_ALLOW_PRIVATE" in answer.text, answer.text
    expected = (201, 200) if settings.webhook_allow_private else (422, 422)
    assert answers == dict.fromkeys(PRIVATE_URLS, expected)
    stored = await client.get(f"/v1/webhooks/{public.json()['id']}", headers=tenant.headers)
    last = PRIVATE_URLS[-1] if settings.webhook_allow_private else "https://93.184.215.14/hook"
    assert stored.json()["url"] == last


async def test_a_name_that_does_not_resolve_yet_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # the send-time check guards it: it resolves the name again before each message
    created = await client.post(
        "/v1/webhooks", headers=tenant.headers, json={"url": "https://hooks.example.invalid/in"}
    )
    assert created.status_code == 201, created.text


async def test_a_url_whose_host_cannot_be_read_is_a_422(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    public = await client.post(
        "/v1/webhooks", headers=tenant.headers, json={"url": "https://93.184.215.14/hook"}
    )
    assert public.status_code == 201, public.text
    for url in UNREADABLE_URLS:
        created = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": url})
        changed = await client.patch(
            f"/v1/webhooks/{public.json()['id']}", headers=tenant.headers, json={"url": url}
        )
        for answer in (created, changed):
            assert answer.status_code == 422, (url, answer.text)
            assert answer.json()["error"]["field"] == "url"
            assert "is not a URL" in answer.json()["error"]["message"]
    listed = await client.get("/v1/webhooks", headers=tenant.headers)
    assert [endpoint["url"] for endpoint in listed.json()["data"]] == ["https://93.184.215.14/hook"]
