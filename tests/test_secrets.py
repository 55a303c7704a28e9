"""API keys never stand in the database or the logs in plaintext, whichever way a
client presents them (header, Basic password, body field or query string)."""

from __future__ import annotations

import io
import logging
import sys

import httpx
import pytest
import sqlalchemy as sa

from tests.support import Tenant
from trackbook import logs
from trackbook.db.tables import metadata
from trackbook.services import Services


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
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert key not in stream.getvalue()
    assert key[-24:] not in stream.getvalue()

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
            for row in rows:
                if any(value and key[-24:] in value for value in row):
                    found.append(table.name)
    assert found == []
