"""ActiveCampaign clients: the v3 Api-Token header, and trackcmp's actid and event key."""

from __future__ import annotations

import httpx
import pytest

from tests.support import Tenant
from trackbook.accounts import service as accounts
from trackbook.accounts.service import Account
from trackbook.services import Services


def token(tenant: Tenant) -> dict[str, str]:
    return {"Api-Token": tenant.key}


@pytest.fixture
async def account(services: Services, tenant: Tenant) -> Account:
    found: Account = await services.db.query(accounts.get_account, tenant.id)
    return found


async def create_contact(client: httpx.AsyncClient, tenant: Tenant, email: str) -> str:
    response = await client.post(
        "/api/3/contacts", headers=token(tenant), json={"contact": {"email": email}}
    )
    assert response.status_code == 201, response.text
    contact_id: str = response.json()["contact"]["id"]
    return contact_id
