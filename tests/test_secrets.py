"""API keys never stand in the database or the logs in plaintext, whichever way a
client presents them (header, Basic password, body field or query string); webhook
signing secrets and ActiveCampaign event keys are stored sealed with the server key."""

from __future__ import annotations

import base64
import io
import logging
import stat
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook
from typer.testing import CliRunner

from tests.automations.conftest import WebhookReceiver, drain
from tests.support import Tenant
from trackbook import logs
from trackbook.accounts import service as accounts
from trackbook.app import create_app
from trackbook.cli import app as main_app
from trackbook.db.tables import accounts as accounts_table
from trackbook.db.tables import metadata, webhook_endpoints
from trackbook.keyring import Keyring, KeyringError, new_key
from trackbook.services import Services
from trackbook.settings import Settings


async def test_no_plaintext_api_key_in_the_database_or_the_logs(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("debug")
    try:
        key = tenant.key
        await client.post(
            "/v1/track", headers=tenant.headers, json={"event": "a", "contact": {"email": "s@x.io"}}
        )
        await client.post(
            "/wp-json/fluent-crm/v2/subscribers", auth=("wp", key), json={"email": "s2@x.io"}
        )
        await client.post("/api/v1/event", json={"APIKey": key, "Event": "b"})
        await client.get("/api.php", params={"APIKey": key, "Command": "event.track", "Event": "c"})
        await client.get("/api/3/eventTracking", headers={"Api-Token": key})
        await client.post(
            "/admin/api.php",
            params={"api_action": "track_event_add"},
            data={"api_key": key, "event": "d", "email": "nobody@x.io"},
        )
        await client.get("/v1/account", headers={"Authorization": "Bearer " + key[:-1] + "x"})
        # Segment's writeKey in the body, in a call Trackbook keeps as a dropped event
        await client.post(
            "/segment/v1/group", json={"writeKey": key, "userId": "u-1", "groupId": "g"}
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert key not in stream.getvalue()
    assert key[-24:] not in stream.getvalue()

    assert await tables_holding(services, key[-24:]) == []
    account = await services.db.query(accounts.get_account, tenant.id)
    event_key = services.keyring.open(account.sealed_event_key)
    assert len(event_key) == 40
    assert await tables_holding(services, event_key[:20]) == []


async def tables_holding(services: Services, needle: str) -> list[str]:
    """The tables with a text or JSON column holding `needle`."""
    found = []
    async with services.db.read() as conn:
        for table in metadata.sorted_tables:
            texts = [
                column
                for column in table.c
                if isinstance(column.type, sa.String | sa.Text | sa.JSON)
                or "JSON" in type(column.type).__name__
            ]
            if not texts:
                continue
            rows = await conn.execute(sa.select(*(sa.cast(c, sa.Text) for c in texts)))
            if any(value and needle in value for row in rows for value in row):
                found.append(table.name)
    return found


async def test_a_webhook_secret_is_stored_sealed_and_still_signs(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, receiver: WebhookReceiver
) -> None:
    hook = await client.post(
        "/v1/webhooks", headers=tenant.headers, json={"url": receiver.url, "event_names": ["*"]}
    )
    secret = hook.json()["secret"]
    body = secret.removeprefix("whsec_")
    assert await tables_holding(services, body[:16]) == []
    async with services.db.read() as conn:
        stored = await conn.scalar(
            sa.select(webhook_endpoints.c.secret).where(webhook_endpoints.c.id == hook.json()["id"])
        )
    assert stored is not None
    assert stored.startswith("sealed:")

    contact = {"email": "w@x.io"}
    await client.post(
        "/v1/track", headers=tenant.headers, json={"event": "sealed", "contact": contact}
    )
    await drain(services)
    [message] = receiver.received
    Webhook(secret).verify(message.body, message.headers)


async def test_secrets_stored_before_sealing_are_sealed_at_start_up(
    settings: Settings, tenant: Tenant, services: Services
) -> None:
    plaintext = "whsec_" + base64.b64encode(b"stored before sealing....").decode()
    event_key = "0123456789abcdef0123456789abcdef01234567"
    async with services.db.transaction() as conn:
        endpoint_id = await conn.scalar(
            sa.insert(webhook_endpoints)
            .values(
                account_id=tenant.id,
                url="https://hooks.example.com/in",
                event_names=[],
                enabled=True,
                secret=plaintext,
                created_at=services.clock.now(),
                updated_at=services.clock.now(),
            )
            .returning(webhook_endpoints.c.id)
        )
        await conn.execute(
            accounts_table.update()
            .where(accounts_table.c.id == tenant.id)
            .values(event_key=event_key)
        )
    restarted = create_app(settings)
    async with LifespanManager(restarted), services.db.read() as conn:
        stored = await conn.scalar(
            sa.select(webhook_endpoints.c.secret).where(webhook_endpoints.c.id == endpoint_id)
        )
        stored_key = await conn.scalar(
            sa.select(accounts_table.c.event_key).where(accounts_table.c.id == tenant.id)
        )
    assert stored is not None
    assert stored_key is not None
    assert stored.startswith("sealed:")
    assert stored_key.startswith("sealed:")
    assert services.keyring.open(stored) == plaintext
    assert services.keyring.open(stored_key) == event_key


def test_the_server_key_file_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = Settings(secret_key_file=str(tmp_path / "keys" / "trackbook.key"))
    first = Keyring.from_settings(settings)
    key_file = tmp_path / "keys" / "trackbook.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sealed = first.seal("whsec_abc")
    assert Keyring.from_settings(settings).open(sealed) == "whsec_abc"
    assert list(key_file.parent.iterdir()) == [key_file]


def test_a_rotated_server_key_still_opens_what_the_old_one_sealed() -> None:
    old, new = new_key(), new_key()
    sealed = Keyring([old]).seal("whsec_abc")
    rotated = Keyring.from_settings(Settings(secret_key=f"{new}, {old}"))
    assert rotated.open(sealed) == "whsec_abc"
    assert Keyring([new]).open(rotated.seal("whsec_def")) == "whsec_def"
    with pytest.raises(KeyringError, match="sealed with another server key"):
        Keyring([new]).open(sealed)
    with pytest.raises(ValidationError, match="32 url-safe base64"):
        Settings(secret_key=f"{new}, not a key")


def test_server_key_prints_a_key_the_settings_take(cli: CliRunner) -> None:
    printed = cli.invoke(main_app, ["server-key"])
    assert printed.exit_code == 0, printed.output
    key = printed.output.strip()
    assert Keyring.from_settings(Settings(secret_key=key)).open(Keyring([key]).seal("s")) == "s"
