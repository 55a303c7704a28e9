"""Creating one contact twenty times at once, through each dialect's contact-creating
route: one contact, one "created" answer, and the dialect's own answer for an existing
contact for the others (issue 23: the rule lives once, in the contacts core)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.support import Tenant

AT_ONCE = 20
ROUTES = {
    # dialect: (path, how the key is sent, body, created, the answer for the others)
    "native": ("/v1/contacts", "bearer", "json", 201, 200),
    "activecampaign-create": ("/api/3/contacts", "api-token", "contact", 201, 422),
    "activecampaign-sync": ("/api/3/contact/sync", "api-token", "contact", 201, 200),
    "fluentcrm": ("/wp-json/fluent-crm/v2/subscribers", "basic", "json", 200, 422),
}


def _request(tenant: Tenant, how: str, body: str, email: str) -> dict[str, Any]:
    headers = {
        "bearer": {"Authorization": f"Bearer {tenant.key}"},
        "api-token": {"Api-Token": tenant.key},
        "basic": {},
    }[how]
    payload = {"contact": {"email": email}} if body == "contact" else {"email": email}
    request: dict[str, Any] = {"headers": headers, "json": payload}
    if how == "basic":
        request["auth"] = ("wp", tenant.key)
    return request


@pytest.mark.parametrize("dialect", list(ROUTES))
async def test_twenty_creates_of_one_email_at_once_make_one_contact(
    client: httpx.AsyncClient, tenant: Tenant, dialect: str
) -> None:
    path, how, body, created, others = ROUTES[dialect]
    email = f"race-{dialect}@example.com"
    request = _request(tenant, how, body, email)
    answers = await asyncio.gather(*(client.post(path, **request) for _ in range(AT_ONCE)))
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {created: 1, others: AT_ONCE - 1}, [a.text for a in answers][:3]
    found = await client.get("/v1/contacts", headers=tenant.headers, params={"email": email})
    assert len(found.json()["data"]) == 1


@pytest.mark.parametrize("dialect", ["segment", "octeth"])
async def test_twenty_first_events_of_one_new_email_at_once_make_one_contact(
    client: httpx.AsyncClient, tenant: Tenant, dialect: str
) -> None:
    """The dialects that create a contact as they record its events or identify it."""
    email = f"race-{dialect}@example.com"
    if dialect == "segment":
        path = "/segment/v1/identify"
        request: dict[str, Any] = {
            "auth": (tenant.key, ""),
            "json": {"userId": f"user-{dialect}", "traits": {"email": email}},
        }
    else:
        path = "/api/v1/event"
        request = {
            "data": {"Command": "event.track", "APIKey": tenant.key, "Email": email, "Event": "x"}
        }
    answers = await asyncio.gather(*(client.post(path, **request) for _ in range(AT_ONCE)))
    assert {answer.status_code for answer in answers} == {200}, [a.text for a in answers][:3]
    found = await client.get("/v1/contacts", headers=tenant.headers, params={"email": email})
    assert len(found.json()["data"]) == 1
