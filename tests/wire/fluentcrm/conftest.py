"""A FluentCRM client: HTTP Basic with any user name and a Trackbook key as password."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.support import Tenant

BASE = "/wp-json/fluent-crm/v2"


def basic(tenant: Tenant) -> httpx.BasicAuth:
    return httpx.BasicAuth("fcadmin", tenant.key)


Subscribe = Callable[..., Awaitable[int]]


@pytest.fixture
def subscribe(client: httpx.AsyncClient, tenant: Tenant) -> Subscribe:
    """Creates a contact through FluentCRM's own API; returns its id."""

    async def create(email: str, **fields: object) -> int:
        response = await client.post(
            f"{BASE}/subscribers", auth=basic(tenant), json={"email": email, **fields}
        )
        assert response.status_code == 200, response.text
        contact_id: int = response.json()["contact"]["id"]
        return contact_id

    return create
