"""Webhook endpoints per account, and sending one signed message (Standard Webhooks)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from standardwebhooks.webhooks import Webhook

from trackbook.automations.references import automations_naming
from trackbook.db.engine import Database
from trackbook.db.tables import deliveries, delivery_attempts, webhook_endpoints
from trackbook.delivery.guard import (
    BlockedTarget,
    check_target,
    check_url,
    pinned,
    resolve,
)
from trackbook.errors import Conflict, Invalid, NotFound
from trackbook.keyring import Keyring

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
MAX_EVENT_NAMES = 100
RESOLVE_SECONDS = 5.0


class WebhookInUse(Conflict):
    """An automation's webhook action sends to the endpoint: deleting it would fail
    every run of that automation."""

    code = "webhook_in_use"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    url: str
    event_names: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL checked when it was given (`checked_target`): the only URL an
    endpoint can be stored with."""

    url: str


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: Endpoint
    secret: str


@dataclass(frozen=True, slots=True)
class Attempt:
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    webhook_id: str
    event_id: int | None
    run_id: int | None
    status: str
    attempts: list[Attempt]
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def _endpoint(row: sa.Row[Any]) -> Endpoint:
    return Endpoint(
        row.id, row.url, list(row.event_names or []), row.enabled, row.created_at, row.updated_at
    )


async def checked_target(url: Any, *, allow_private: bool) -> Target:
    """The URL as a target, or Invalid: not http(s), or a host that is not public
    (unless private targets are allowed); sending checks the address again."""
    if not isinstance(url, str) or len(url) > 2000:
        raise Invalid("url", "must be a URL of at most 2000 characters")
    try:
        await check_target(url, allow_private=allow_private, seconds=RESOLVE_SECONDS)
    except BlockedTarget as error:  # a private one's message names the setting
        raise Invalid("url", str(error)) from None
    return Target(url)


def _check_names(names: Any) -> list[str]:
    if not isinstance(names, list) or len(names) > MAX_EVENT_NAMES:
        raise Invalid("event_names", f"must be a list of at most {MAX_EVENT_NAMES} event names")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise Invalid(f"event_names.{index}", "must be an event name of 1 to 255 characters")
    return list(dict.fromkeys(names))


async def add_endpoint(
    db: Database,
    account_id: int,
    *,
    url: Any,
    event_names: list[str],
    enabled: bool,
    now: datetime,
    keyring: Keyring,
    allow_private: bool,
) -> CreatedEndpoint:
    """Checks the target, then stores the endpoint. The check comes before the
    transaction: resolving a name may take seconds, during which SQLite's one write
    lock would be held."""
    target = await checked_target(url, allow_private=allow_private)
    return await db.write(
        create_endpoint,
        account_id,
        target=target,
        event_names=event_names,
        enabled=enabled,
        now=now,
        keyring=keyring,
    )


async def change_endpoint(
    db: Database,
    account_id: int,
    endpoint_id: int,
    *,
    now: datetime,
    allow_private: bool,
    url: Any = None,
    event_names: list[str] | None = None,
    enabled: bool | None = None,
) -> Endpoint:
    """Checks a new target (before the transaction, as `add_endpoint`), then updates."""
    target = None if url is None else await checked_target(url, allow_private=allow_private)
    return await db.write(
        update_endpoint,
        account_id,
        endpoint_id,
        now=now,
        target=target,
        event_names=event_names,
        enabled=enabled,
    )


async def create_endpoint(
    conn: AsyncConnection,
    account_id: int,
    *,
    target: Target,
    event_names: list[str],
    enabled: bool,
    now: datetime,
    keyring: Keyring,
) -> CreatedEndpoint:
    """The endpoint and its signing secret, which is stored sealed and shown only here."""
    secret = new_secret()
    endpoint_id = await conn.scalar(
        sa.insert(webhook_endpoints)
        .values(
            account_id=account_id,
            url=target.url,
            event_names=_check_names(event_names),
            enabled=enabled,
            secret=keyring.seal(secret),
            created_at=now,
            updated_at=now,
        )
        .returning(webhook_endpoints.c.id)
    )
    assert endpoint_id is not None  # noqa: S101 - RETURNING of an insert
    return CreatedEndpoint(await get_endpoint(conn, account_id, endpoint_id), secret)


async def list_endpoints(conn: AsyncConnection, account_id: int) -> list[Endpoint]:
    rows = await conn.execute(
        sa.select(webhook_endpoints)
        .where(webhook_endpoints.c.account_id == account_id)
        .order_by(webhook_endpoints.c.id)
    )
    return [_endpoint(row) for row in rows]


async def _row(conn: AsyncConnection, account_id: int, endpoint_id: int) -> sa.Row[Any]:
    row = (
        await conn.execute(
            sa.select(webhook_endpoints).where(
                webhook_endpoints.c.account_id == account_id,
                webhook_endpoints.c.id == endpoint_id,
            )
        )
    ).one_or_none()
    if row is None:
        raise WebhookNotFound(f"webhook {endpoint_id} does not exist")
    return row


async def get_endpoint(conn: AsyncConnection, account_id: int, endpoint_id: int) -> Endpoint:
    return _endpoint(await _row(conn, account_id, endpoint_id))


async def update_endpoint(
    conn: AsyncConnection,
    account_id: int,
    endpoint_id: int,
    *,
    now: datetime,
    target: Target | None = None,
    event_names: list[str] | None = None,
    enabled: bool | None = None,
) -> Endpoint:
    await _row(conn, account_id, endpoint_id)
    values: dict[str, Any] = {"updated_at": now}
    if target is not None:
        values["url"] = target.url
    if event_names is not None:
        values["event_names"] = _check_names(event_names)
    if enabled is not None:
        values["enabled"] = enabled
    await conn.execute(
        webhook_endpoints.update()
        .where(webhook_endpoints.c.account_id == account_id, webhook_endpoints.c.id == endpoint_id)
        .values(**values)
    )
    return await get_endpoint(conn, account_id, endpoint_id)


async def delete_endpoint(conn: AsyncConnection, account_id: int, endpoint_id: int) -> None:
    """Refused while an automation's webhook action sends to the endpoint."""
    await _row(conn, account_id, endpoint_id)
    users = await automations_naming(
        conn,
        account_id,
        lambda _, actions: any(
            action.get("type") == "webhook" and action.get("webhook_id") == endpoint_id
            for action in actions
        ),
    )
    if users:
        raise WebhookInUse(
            f"webhook {endpoint_id} is used by {', '.join(users)}; change or delete them first"
        )
    await conn.execute(
        webhook_endpoints.delete().where(
            webhook_endpoints.c.account_id == account_id, webhook_endpoints.c.id == endpoint_id
        )
    )


async def list_deliveries(
    conn: AsyncConnection, account_id: int, endpoint_id: int, *, limit: int = 50
) -> list[Delivery]:
    """The endpoint's latest deliveries, newest first, each with its attempts."""
    await _row(conn, account_id, endpoint_id)
    rows = (
        await conn.execute(
            sa.select(deliveries)
            .where(deliveries.c.account_id == account_id, deliveries.c.endpoint_id == endpoint_id)
            .order_by(deliveries.c.id.desc())
            .limit(limit)
        )
    ).all()
    attempts: dict[int, list[Attempt]] = {row.id: [] for row in rows}
    if rows:
        for attempt in await conn.execute(
            sa.select(delivery_attempts)
            .where(
                delivery_attempts.c.account_id == account_id,
                delivery_attempts.c.delivery_id.in_(attempts),
            )
            .order_by(delivery_attempts.c.id)
        ):
            attempts[attempt.delivery_id].append(
                Attempt(
                    attempt.attempted_at, attempt.status_code, attempt.error, attempt.duration_ms
                )
            )
    return [
        Delivery(
            row.id,
            row.webhook_id,
            row.event_id,
            row.run_id,
            row.status,
            attempts[row.id],
            row.last_error,
            row.created_at,
            row.delivered_at,
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class SendResult:
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    permanent: bool = False
    """Retrying cannot help (a refused target)."""


class WebhookSender:
    """Signs and POSTs one message; never raises for what the endpoint does."""

    def __init__(self, *, timeout: float, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._timeout = timeout
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def send(
        self, url: str, secret: str, webhook_id: str, payload: dict[str, Any], *, sent_at: datetime
    ) -> SendResult:
        body = orjson.dumps(payload).decode()
        started = time.monotonic()

        def result(
            delivered: bool, code: int | None, error: str | None, *, permanent: bool = False
        ) -> SendResult:
            took = int((time.monotonic() - started) * 1000)
            return SendResult(delivered, code, error, took, permanent)

        try:
            target = check_url(url)
            address = await resolve(target, allow_private=self._allow_private)
        except BlockedTarget as error:
            return result(False, None, f"refused: {error}", permanent=True)
        except OSError as error:
            return result(False, None, str(error))
        pinned_url, headers, extensions = pinned(target, address)
        headers |= {
            "content-type": "application/json",
            "user-agent": "Trackbook-Webhooks/1",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, sent_at, body),
        }
        request = self._client.build_request(
            "POST", pinned_url, content=body, headers=headers, extensions=extensions
        )
        try:
            # one deadline for the whole exchange (a trickling endpoint cannot outlast the
            # worker's lease), and the answer's body is never read: only its status counts
            async with asyncio.timeout(self._timeout):
                response = await self._client.send(request, stream=True)
                await response.aclose()
        except TimeoutError:
            return result(False, None, f"no answer within {self._timeout:g} s")
        except httpx.HTTPError as error:
            return result(False, None, f"{type(error).__name__}: {error}".rstrip(": "))
        if response.is_success:
            return result(True, response.status_code, None)
        if response.is_redirect:
            where = response.headers.get("location", "")
            return result(False, response.status_code, f"redirect to {where} not followed")
        return result(False, response.status_code, f"HTTP {response.status_code}")
