"""Publishable keys: they record events (native track, identify and batch, Octeth
event.track, every Segment route) and are refused, in each dialect's shape, everywhere
else; browsers may use them only from the origins they list."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from typer.testing import CliRunner, Result

from tests.support import UNLIMITED, ManualClock, Tenant, make_tenant
from tests.web.test_dashboard_isolation import PASSWORD, sign_in
from trackbook.accounts import service as accounts
from trackbook.accounts import users
from trackbook.accounts.service import KeyKind
from trackbook.app import create_app
from trackbook.cli import app as cli_app
from trackbook.db.migrate import upgrade
from trackbook.services import Services
from trackbook.settings import Settings

SHOP = "https://shop.example"
PUBLISHABLE = re.compile(r"tb_pub_[A-Za-z0-9]{40}")
# The routes a publishable key may call, besides every route under /segment/.
INGEST = {("POST", "/v1/track"), ("POST", "/v1/batch"), ("POST", "/v1/identify")}
INGEST |= {("POST", "/api/v1/event")}
# Routes that take no API key at all: ActiveCampaign's trackcmp names the account by
# actid and event key, and the health checks are open.
KEYLESS = {("POST", "/event"), ("GET", "/healthz"), ("GET", "/readyz")}


async def publishable_key(services: Services, account_id: int, *origins: str) -> str:
    issued = await services.db.write(
        accounts.create_key,
        account_id,
        now=datetime.now(UTC),
        name="website",
        kind=KeyKind.PUBLISHABLE,
        origins=origins,
    )
    return issued.secret


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def presenting(method: str, path: str, key: str) -> dict[str, Any]:
    """The request arguments that present `key` as the dialect of `path` expects it."""
    if path.startswith("/wp-json/"):
        return {"headers": {"Authorization": basic("wordpress", key)}}
    if path.startswith("/api/3/"):
        return {"headers": {"Api-Token": key}}
    if path == "/admin/api.php":
        return {"params": {"api_action": "track_event_add"}, "data": {"api_key": key}}
    if path == "/api.php":
        return {
            "headers": {"Authorization": f"Bearer {key}"},
            "params": {"Command": "website_events.properties", "ListID": "1"},
        }
    if path.startswith(("/v1/", "/api/v1/")):
        request: dict[str, Any] = {"headers": {"Authorization": f"Bearer {key}"}}
        if method in ("POST", "PUT", "PATCH"):
            request["json"] = {}
        return request
    raise AssertionError(f"{method} {path}: no known way to present an API key; add one")


def keyed_routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Every (method, path template) of the API, from the app's own route table."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    schema: dict[str, Any] = transport.app.openapi()  # type: ignore[attr-defined]
    routes = [
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
    ]
    assert len(routes) > 40
    return [route for route in routes if route not in KEYLESS]


def filled(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


async def test_a_publishable_key_records_events_through_native_and_octeth(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    key = await publishable_key(services, tenant.id)
    assert key.startswith("tb_pub_")
    bearer = {"Authorization": f"Bearer {key}"}
    tracked = await client.post(
        "/v1/track",
        headers=bearer,
        json={"event": "viewed", "contact": {"anonymous_id": "visitor-pub-1"}},
    )
    assert tracked.status_code == 201, tracked.text
    batch = await client.post(
        "/v1/batch",
        headers=bearer,
        json={"events": [{"event": "clicked", "contact": {"anonymous_id": "visitor-pub-1"}}]},
    )
    assert batch.json()["results"][0]["status"] == "created", batch.text
    identified = await client.post(
        "/v1/identify",
        headers=bearer,
        json={"anonymous_id": "visitor-pub-1", "contact": {"email": "pub@example.com"}},
    )
    assert identified.status_code == 200, identified.text
    assert identified.json() == {"identified": True}
    [contact] = (
        await client.get(
            "/v1/contacts", headers=tenant.headers, params={"email": "pub@example.com"}
        )
    ).json()["data"]
    contact_id = contact["id"]
    octeth = await client.post(
        "/api/v1/event",
        json={"APIKey": key, "Command": "event.track", "Event": "signup", "ID": "pub-ext"},
    )
    assert octeth.status_code == 200, octeth.text
    legacy = await client.get(
        "/api.php",
        params={
            "APIKey": key,
            "Command": "event.track",
            "Event": "login",
            "Email": "pub@example.com",
        },
    )
    assert legacy.status_code == 200, legacy.text

    timeline = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    # Octeth's identify: without a UUID, a publishable key is given a new visitor id,
    # linked to the contact, as for an email nobody has (never the contact's own)
    assert sorted(event["event"] for event in timeline.json()["data"]) == [
        "clicked",
        "identify",
        "login",
        "viewed",
    ]


async def test_a_publishable_key_learns_nothing_from_what_ingest_answers(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    known = await client.post(
        "/v1/contacts", headers=tenant.headers, json={"email": "held@example.com"}
    )
    contact_id = known.json()["id"]
    key = await publishable_key(services, tenant.id, SHOP)
    page = {"Authorization": f"Bearer {key}", "Origin": SHOP}
    for path, body in (
        ("/v1/track", {"event": "probe", "contact": {"id": "{id}"}}),
        ("/v1/identify", {"anonymous_id": "probe-visitor", "contact": {"id": "{id}"}}),
        ("/v1/batch", {"events": [{"event": "probe", "contact": {"id": "{id}"}}]}),
    ):
        answers = []
        for named in (contact_id, 987654321):
            filled_body = orjson.loads(orjson.dumps(body).replace(b'"{id}"', str(named).encode()))
            response = await client.post(path, headers=page, json=filled_body)
            assert "held@example.com" not in response.text, (path, response.text)
            answers.append((response.status_code, response.content))
        # the same refusal whether the id exists or not
        assert answers[0] == answers[1], (path, answers)
        assert answers[0][0] == (200 if path == "/v1/batch" else 403), (path, answers)
    # by email: stored, and the answers carry no ids and no contact data
    tracked = await client.post(
        "/v1/track", headers=page, json={"event": "seen", "contact": {"email": "held@example.com"}}
    )
    assert tracked.status_code == 201, tracked.text
    assert set(tracked.json()) == {"occurred_at", "duplicate"}
    batch = await client.post(
        "/v1/batch",
        headers=page,
        json={"events": [{"event": "seen", "contact": {"email": "held@example.com"}}]},
    )
    assert set(batch.json()["results"][0]) == {"index", "status", "occurred_at", "duplicate"}
    identified = await client.post(
        "/v1/identify",
        headers=page,
        json={"anonymous_id": "probe-visitor", "contact": {"email": "held@example.com"}},
    )
    assert identified.json() == {"identified": True}
    timeline = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    assert [event["event"] for event in timeline.json()["data"]] == ["seen", "seen"]


async def test_a_publishable_key_is_refused_on_every_other_route_without_revealing_ids(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    tracked = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "kept", "contact": {"email": "kept@example.com"}},
    )
    contact_id = str(tracked.json()["contact_id"])
    key = await publishable_key(services, tenant.id)
    refused = 0
    for method, path in keyed_routes(client):
        if (method, path) in INGEST or path.startswith("/segment/"):
            continue
        answers = []
        for value in (contact_id, "987654321", "kept"):
            url = filled(path, value)
            response = await client.request(method, url, **presenting(method, path, key))
            assert response.status_code == 403, (method, url, response.text)
            assert "access-control-allow-origin" not in response.headers
            answers.append(response.content)
        assert answers[0] == answers[1] == answers[2], (method, path)
        refused += 1
    assert refused > 40
    still = await client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers)
    assert still.status_code == 200
    assert (await client.get("/v1/account", headers=tenant.headers)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "shape"),
    [
        ("GET", "/v1/contacts", {"error": {"code": "forbidden"}}),
        ("GET", "/wp-json/fluent-crm/v2/subscribers", {"code": "rest_forbidden"}),
        ("GET", "/api/v1/website_events.properties", {"Errors": [{"Code": 20}]}),
        ("GET", "/api.php", {"Errors": [{"Code": 20}]}),
        ("GET", "/api/3/contacts", {"message": "Forbidden"}),
        ("POST", "/admin/api.php", {"success": 0}),
    ],
)
async def test_the_refusal_takes_each_dialects_shape(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    method: str,
    path: str,
    shape: dict[str, Any],
) -> None:
    key = await publishable_key(services, tenant.id)
    response = await client.request(method, path, **presenting(method, path, key))
    assert response.status_code == 403
    assert_contains(response.json(), shape)


def assert_contains(body: Any, shape: Any) -> None:
    if isinstance(shape, dict):
        for name, value in shape.items():
            assert_contains(body[name], value)
    elif isinstance(shape, list):
        for item, value in zip(body, shape, strict=False):
            assert_contains(item, value)
    else:
        assert body == shape


async def test_secret_keys_keep_working_where_publishable_ones_cannot(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert (await client.get("/v1/contacts", headers=tenant.headers)).status_code == 200
    octeth = await client.get(
        "/api.php", params={"APIKey": tenant.key, "Command": "website_events.properties"}
    )
    assert octeth.status_code == 422  # Octeth's own "Missing ListID", past the key check


async def timeline_names(
    client: httpx.AsyncClient, tenant: Tenant, email: str
) -> Sequence[str] | None:
    found = (
        await client.get("/v1/contacts", params={"email": email}, headers=tenant.headers)
    ).json()
    if not found["data"]:
        return None
    contact_id = found["data"][0]["id"]
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    return [event["event"] for event in events.json()["data"]]


async def test_a_browser_on_a_listed_origin_gets_the_origin_allowed(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    key = await publishable_key(services, tenant.id, SHOP, "http://localhost:3000")
    answer = await client.post(
        "/v1/track",
        headers={"Authorization": f"Bearer {key}", "Origin": SHOP},
        json={"event": "from-shop", "contact": {"email": "browser@example.com"}},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in answer.headers["vary"]
    octeth = await client.post(
        "/api/v1/event",
        headers={"Origin": "http://localhost:3000"},
        data={"APIKey": key, "Event": "from-local", "Email": "browser@example.com"},
    )
    assert octeth.status_code == 200, octeth.text
    assert octeth.headers["access-control-allow-origin"] == "http://localhost:3000"
    names = await timeline_names(client, tenant, "browser@example.com")
    assert sorted(names or ()) == ["from-local", "from-shop", "identify"]


async def test_a_browser_on_another_origin_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    key = await publishable_key(services, tenant.id, SHOP)
    for origin in ("https://evil.example", "http://shop.example", "null"):
        refused = await client.post(
            "/v1/track",
            headers={"Authorization": f"Bearer {key}", "Origin": origin},
            json={"event": "stolen", "contact": {"email": "victim@example.com"}},
        )
        assert refused.status_code == 403, origin
        assert refused.json()["error"]["code"] == "forbidden"
        assert "access-control-allow-origin" not in refused.headers
        octeth = await client.post(
            "/api/v1/event",
            headers={"Origin": origin},
            data={"APIKey": key, "Event": "stolen", "Email": "victim@example.com"},
        )
        assert octeth.status_code == 403
        assert octeth.json()["Errors"][0]["Code"] == 20
    assert await timeline_names(client, tenant, "victim@example.com") is None
    # a server sends no Origin: the key works there
    server = await client.post(
        "/v1/track",
        headers={"Authorization": f"Bearer {key}"},
        json={"event": "from-server", "contact": {"email": "victim@example.com"}},
    )
    assert server.status_code == 201


async def test_a_publishable_key_without_origins_accepts_any_and_a_secret_key_opens_no_cors(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    key = await publishable_key(services, tenant.id)
    anywhere = await client.post(
        "/v1/track",
        headers={"Authorization": f"Bearer {key}", "Origin": "https://anywhere.example"},
        json={"event": "x", "contact": {"anonymous_id": "anywhere-1"}},
    )
    assert anywhere.status_code == 201
    assert anywhere.headers["access-control-allow-origin"] == "https://anywhere.example"
    secret = await client.post(
        "/v1/track",
        headers={**tenant.headers, "Origin": "https://anywhere.example"},
        json={"event": "x", "contact": {"anonymous_id": "anywhere-1"}},
    )
    assert secret.status_code == 201
    assert "access-control-allow-origin" not in secret.headers
    read = await client.get(
        "/v1/contacts", headers={**tenant.headers, "Origin": "https://anywhere.example"}
    )
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers
    revoked = await services.db.write(
        accounts.revoke_key,
        key[: accounts.prefix_length(KeyKind.PUBLISHABLE)],
        now=datetime.now(UTC),
    )
    assert revoked.revoked_at is not None


@pytest.fixture
def own_database(empty_database_url: str) -> str:
    upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
async def own_database_client(
    own_database: str, clock: ManualClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """A server on a database of its own: preflights look at every account's keys."""
    app = create_app(
        Settings(database_url=own_database, worker_in_process=False, **UNLIMITED), clock=clock
    )
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://trackbook.test"
        ) as client:
            yield client, app.state.services


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type",
    }


async def test_preflights_are_answered_for_the_origins_of_live_publishable_keys_only(
    own_database_client: tuple[httpx.AsyncClient, Services],
) -> None:
    client, services = own_database_client
    tenant = await make_tenant(services, "Preflight")
    refused = await client.options("/v1/track", headers=preflight(SHOP))
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers

    await publishable_key(services, tenant.id, SHOP)
    services.auth.forget_account(tenant.id)
    for path in ("/v1/track", "/v1/batch", "/v1/identify", "/api/v1/event", "/segment/v1/batch"):
        allowed = await client.options(path, headers=preflight(SHOP))
        assert allowed.status_code == 204, path
        assert allowed.headers["access-control-allow-origin"] == SHOP
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
    for origin in ("https://evil.example", "null"):
        other = await client.options("/v1/track", headers=preflight(origin))
        assert other.status_code == 403
        assert "access-control-allow-origin" not in other.headers
    for path in ("/v1/contacts", "/v1/contacts/1/events", "/api.php", "/api/3/contacts"):
        closed = await client.options(path, headers=preflight(SHOP, "GET"))
        assert "access-control-allow-origin" not in closed.headers, path
    not_post = await client.options("/v1/track", headers=preflight(SHOP, "DELETE"))
    assert "access-control-allow-origin" not in not_post.headers


async def cli_run(runner: CliRunner, *args: str) -> Result:
    """The CLI as an operator runs it, in a thread: it runs an event loop of its own."""
    return await asyncio.to_thread(runner.invoke, cli_app, list(args), catch_exceptions=False)


async def cli_invoke(runner: CliRunner, *args: str) -> str:
    result = await cli_run(runner, *args)
    assert result.exit_code == 0, result.output
    return result.output


async def test_the_cli_creates_and_lists_publishable_keys(
    cli: CliRunner, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await cli_invoke(
        cli,
        *("keys", "create", "--account", str(tenant.id), "--name", "site", "--publishable"),
        *("--origin", "https://Shop.Example/", "--origin", "http://localhost:3000"),
    )
    key = PUBLISHABLE.search(created)
    assert key is not None, created
    assert "https://shop.example, http://localhost:3000" in created
    listed = await cli_invoke(cli, "keys", "list", "--account", str(tenant.id))
    assert re.search(r"tb_pub_\w{8}…\s+\d+\s+publishable\s+https://shop.example", listed)
    tracked = await client.post(
        "/v1/track",
        headers={"Authorization": f"Bearer {key[0]}", "Origin": SHOP},
        json={"event": "cli-key", "contact": {"anonymous_id": "cli-visitor"}},
    )
    assert tracked.status_code == 201
    read = await client.get("/v1/contacts", headers={"Authorization": f"Bearer {key[0]}"})
    assert read.status_code == 403
    bad = await cli_run(
        cli, "keys", "create", "--account", str(tenant.id), "--publishable", "--origin", "ftp://x"
    )
    assert bad.exit_code == 1
    assert "origin" in bad.output
    secret_with_origin = await cli_run(
        cli, "keys", "create", "--account", str(tenant.id), "--origin", SHOP
    )
    assert secret_with_origin.exit_code == 1
    revoked = await cli_invoke(cli, "keys", "revoke", key[0][:15])
    assert f"revoked {key[0][:15]}" in revoked
    listed = await cli_invoke(cli, "keys", "list", "--account", str(tenant.id))
    assert re.search(rf"{key[0][:15]}….*\d{{4}}-\d\d-\d\d.*\d{{4}}-\d\d-\d\d", listed)


async def test_the_dashboard_creates_and_revokes_publishable_keys(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    email = f"keys{tenant.id}@example.com"
    await services.db.write(users.create_user, tenant.id, email, PASSWORD, now=services.clock.now())
    csrf = await sign_in(client, email)
    created = await client.post(
        "/settings/keys",
        data={"csrf": csrf, "name": "site", "kind": "publishable", "origins": SHOP},
    )
    assert created.status_code == 200
    key = PUBLISHABLE.search(created.text)
    assert key is not None
    assert "publishable, events only, from https://shop.example" in created.text
    tracked = await client.post(
        "/v1/track",
        headers={"Authorization": f"Bearer {key[0]}", "Origin": SHOP},
        json={"event": "dash-key", "contact": {"anonymous_id": "dash-visitor"}},
    )
    assert tracked.status_code == 201
    assert (
        await client.get("/v1/account", headers={"Authorization": f"Bearer {key[0]}"})
    ).status_code == 403
    bad = await client.post(
        "/settings/keys",
        data={"csrf": csrf, "name": "x", "kind": "publishable", "origins": "not an origin"},
    )
    assert "must be an origin" in bad.text
    revoked = await client.post("/settings/keys/revoke", data={"csrf": csrf, "prefix": key[0][:15]})
    assert revoked.status_code == 303
    refused = await client.post(
        "/v1/track",
        headers={"Authorization": f"Bearer {key[0]}"},
        json={"event": "dash-key", "contact": {"anonymous_id": "dash-visitor"}},
    )
    assert refused.status_code == 401
