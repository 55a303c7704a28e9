"""Two accounts by every route of the app, generated from its route table: account A's
credentials aimed at account B's ids read nothing of B's and change nothing of B's.

A route added later is in the matrix without anyone listing it; one whose path names
an id the matrix does not know, or whose credentials it cannot present, fails the test
until the matrix learns them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from starlette.routing import BaseRoute, Route

from tests.conftest import TenantFactory
from tests.support import Tenant
from tests.test_isolation import OwnerWorld, _owner_world
from tests.web.test_dashboard_isolation import PASSWORD, sign_in
from trackbook.accounts import service as accounts
from trackbook.accounts import users
from trackbook.db.tables import accounts as accounts_table
from trackbook.db.tables import metadata
from trackbook.services import Services

# routes that hold no account's data
ACCOUNT_FREE = {
    "/openapi.json",
    "/docs",
    "/redoc",
    "/healthz",
    "/readyz",
    "/metrics",
    "/signin",
    "/signout",  # ends the intruder's own session; it names nothing
}
# what of B's must never reach A: B's contact's email, external id, property value and
# anonymous visitor id
OWNER_MARKERS = ("vip@owner.io", "owner-ext-1", "4242", "owner-visitor", "stranger@owner.io")
# dialect paths that take a command or action in the query string: each is tried with
# every one that names something
VARIANTS: dict[str, list[dict[str, str]]] = {
    "/api.php": [
        {"Command": "event.track"},
        {"Command": "website_events.properties"},
    ],
    "/admin/api.php": [{"api_action": "track_event_add", "api_output": "json"}],
}


API_PREFIXES = ("/v1/", "/wp-json/", "/api/", "/api.php", "/admin/api.php", "/segment/")


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path == "/event"


def every_route(routes: list[BaseRoute]) -> Iterator[Route]:
    """The app's routes, with included routers opened up."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from every_route(included.routes)
        elif isinstance(route, Route):
            yield route


@dataclass(frozen=True)
class World(OwnerWorld):
    automation_id: int
    webhook_id: int
    key_prefix: str


@dataclass
class Intruder:
    tenant: Tenant
    actid: str
    event_key: str
    csrf: str


def path_values(world: World) -> dict[str, object]:
    return {
        "contact_id": world.contact_id,
        "subscriber_id": world.contact_id,
        "list_id": world.list_id,
        "log_id": world.event_id,
        "segment_id": world.segment_id,
        "automation_id": world.automation_id,
        "webhook_id": world.webhook_id,
        "name": "secret_purchase",
    }


def owner_ids(world: World) -> dict[str, Any]:
    """Fields naming B's things, as any dialect's body or query may spell them."""
    return {
        "contact": {"id": world.contact_id},
        "contact_id": world.contact_id,
        "subscriber_id": world.contact_id,
        "id": world.contact_id,
        "list_id": world.list_id,
        "ListID": world.list_id,
        "lists": [world.list_id],
        "segment_id": world.segment_id,
        "webhook_id": world.webhook_id,
        "automation_id": world.automation_id,
        "anonymous_id": "owner-visitor",
        "UUID": "owner-visitor",
        "ID": "owner-ext-1",
    }


def request_for(
    method: str,
    path: str,
    world: World,
    intruder: Intruder,
    query: dict[str, str],
    loaded: bool,
) -> dict[str, Any]:
    """The request A makes, with A's credentials as the path's dialect takes them;
    `loaded` puts B's ids in the query and body too."""
    key = intruder.tenant.key
    ids = owner_ids(world) if loaded else {}
    flat = {k: str(v) for k, v in ids.items() if not isinstance(v, dict | list)}
    params = dict(query)
    if loaded and method in ("GET", "DELETE"):
        params |= flat | {"contact": str(world.contact_id), "search": "vip@owner.io"}
    body = {} if method in ("GET", "DELETE") else {"json": ids}
    if path.startswith("/v1/"):
        return {"headers": intruder.tenant.headers, "params": params, **body}
    if path.startswith("/wp-json/"):
        return {"auth": ("wp", key), "params": params, **body}
    if path.startswith(("/api/v1/", "/api.php")):
        return {"params": params | {"APIKey": key}, "json": ids | {"APIKey": key}}
    if path.startswith("/segment/"):
        # Segment's write key is the Basic user name; a userId or anonymousId that is
        # B's would make A a contact of A's own with it, so A's are used
        segment_ids = {"userId": "matrix-user", "anonymousId": "matrix-visitor", "type": "track"}
        return {"auth": (key, ""), "params": params, "json": {**segment_ids, "event": "m"}}
    if path.startswith("/api/3/"):
        return {"headers": {"Api-Token": key}, "params": params, **body}
    if path in ("/event", "/admin/api.php"):
        form = flat | {
            "api_key": key,
            "actid": intruder.actid,
            "key": intruder.event_key,
            "event": "matrix",
            "visit": f'{{"email":"probe@intruder.io","id":"{world.contact_id}"}}',
        }
        return {"params": params, "data": form}
    if not is_api(path):
        # the dashboard: A's session cookie is in the client; forms carry A's CSRF token
        form = {"csrf": intruder.csrf}
        if loaded:
            form |= flat | {"prefix": world.key_prefix, "enabled": "off"}
        return {"params": params} if method == "GET" else {"params": params, "data": form}
    pytest.fail(f"the matrix does not know how {path} authenticates: teach request_for")


async def owner_rows(services: Services, account_id: int) -> dict[str, list[tuple[str, ...]]]:
    """Every row of B's in every table, as text: what a write would change."""
    rows: dict[str, list[tuple[str, ...]]] = {}
    async with services.db.read() as conn:
        for table in metadata.sorted_tables:
            if table is accounts_table:
                where = table.c.id == account_id
            else:
                assert "account_id" in table.c, f"{table.name} has no account_id"
                where = table.c.account_id == account_id
            found = await conn.execute(sa.select(table).where(where))
            rows[table.name] = sorted(tuple(str(value) for value in row) for row in found)
    return rows


async def _world(client: httpx.AsyncClient, services: Services, owner: Tenant) -> World:
    base = await _owner_world(client, services, owner)
    hook = await client.post(
        "/v1/webhooks", headers=owner.headers, json={"url": "https://hooks.example.com/b"}
    )
    automation = await client.post(
        "/v1/automations",
        headers=owner.headers,
        json={
            "name": "B's",
            "trigger": {"event": "secret_purchase"},
            "actions": [{"type": "webhook", "webhook_id": hook.json()["id"]}],
        },
    )
    assert automation.status_code == 201, automation.text
    prefix = (await services.db.query(accounts.list_keys, owner.id))[0].prefix
    return World(
        **vars(base),
        automation_id=automation.json()["id"],
        webhook_id=hook.json()["id"],
        key_prefix=prefix,
    )


async def test_every_route_keeps_one_account_out_of_another(
    app: FastAPI, client: httpx.AsyncClient, services: Services, new_tenant: TenantFactory
) -> None:
    world = await _world(client, services, await new_tenant("Owner"))
    tenant = await new_tenant("Intruder")
    account = await services.db.query(accounts.get_account, tenant.id)
    email = f"intruder{tenant.id}@example.com"
    await services.db.write(users.create_user, tenant.id, email, PASSWORD, now=services.clock.now())
    intruder = Intruder(
        tenant,
        account.actid,
        services.keyring.open(account.sealed_event_key),
        await sign_in(client, email),
    )
    before = await owner_rows(services, world.tenant.id)
    values = path_values(world)

    tried = 0
    # the dashboard last: its forms switch A's own tracking off, which the dialects
    # would answer before looking anything up
    routes = every_route(app.router.routes)
    for route in sorted(routes, key=lambda r: (not is_api(r.path), r.path)):
        if route.path in ACCOUNT_FREE:
            continue
        names = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        unknown = [name for name in names if name not in values]
        assert unknown == [], f"{route.path}: the matrix has no value for {unknown}"
        path = re.sub(r"{(\w+)(?::\w+)?}", lambda m: str(values[m[1]]), route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            statuses = set()
            for query in VARIANTS.get(route.path, [{}]):
                for loaded in (False, True):
                    request = request_for(method, route.path, world, intruder, query, loaded)
                    response = await client.request(method, path, **request)
                    tried += 1
                    where = f"{method} {path} {query} {'loaded' if loaded else 'bare'}"
                    assert response.status_code < 500, (where, response.text)
                    for marker in OWNER_MARKERS:
                        assert marker not in response.text, (where, marker, response.text)
                    statuses.add(response.status_code)
            if set(names) - {"name"}:
                # a path naming B's id is not found, whatever the method: a body of the
                # wrong shape may be refused first, but one of the two reaches the lookup
                assert 404 in statuses, (method, path, statuses)
                assert statuses <= {404, 422}, (method, path, statuses)

    assert tried > 100
    assert await owner_rows(services, world.tenant.id) == before
