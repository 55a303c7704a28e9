"""ActiveCampaign clients: the v3 Api-Token header, and trackcmp's actid and event key."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.support import Tenant
from trackbook.accounts import service as accounts
from trackbook.accounts.service import Account
from trackbook.services import Services


def token(tenant: Tenant) -> dict[str, str]:
    return {"Api-Token": tenant.key}


@dataclass(frozen=True)
class SiteTracking:
    """The account's site-tracking credentials, as ActiveCampaign's settings show them."""

    id: int
    actid: str
    event_key: str


@pytest.fixture
async def account(services: Services, tenant: Tenant) -> SiteTracking:
    found: Account = await services.db.query(accounts.get_account, tenant.id)
    return SiteTracking(found.id, found.actid, services.keyring.open(found.sealed_event_key))


async def create_contact(client: httpx.AsyncClient, tenant: Tenant, email: str) -> str:
    response = await client.post(
        "/api/3/contacts", headers=token(tenant), json={"contact": {"email": email}}
    )
    assert response.status_code == 201, response.text
    contact_id: str = response.json()["contact"]["id"]
    return contact_id
