"""What a publishable key may do to contacts: record events, create contacts and link an
anonymous visitor; never change an existing contact's email, external id, names or
status, never move an identity between contacts, and never learn what is held.

The routes are those of the app's route table a publishable key is let in on; one the
test does not know how to attack fails it until it learns."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.support import Tenant
from tests.test_publishable_keys import INGEST, keyed_routes, publishable_key
from trackbook.db.tables import contact_aliases, contacts, list_members
from trackbook.events import dropped
from trackbook.services import Services

VICTIM = "victim@corp.com"
VICTIM_EXTERNAL_ID = "victim-ext"
VICTIM_VISITOR = "victim-visitor"
OTHER = "other@corp.com"
OTHER_EXTERNAL_ID = "other-ext"
# Octeth's legacy endpoint dispatches on Command: event.track is the one open to them.
OCTETH_LEGACY = {("GET", "/api.php"), ("POST", "/api.php")}
# The ingest routes whose requests name a list (Octeth's ListID); native track, batch
# and identify and Segment's messages have no list field.
LISTED = {"/api/v1/event", "/api.php"}
UNKNOWN_LIST = 10_000
"""Added to the held list's id: a list id the account does not have."""


@dataclass(frozen=True)
class Naming:
    """One way a request names a contact, and what it says of it."""

    external_id: str | None
    email: str | None
    anonymous_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    status: str | None = None
    list_id: int | None = None
    """A list the contact is said to join."""


def takeovers(tag: str, list_id: int) -> list[Naming]:
    """Namings that, if applied, would change the victim or move its visitor id; `tag`
    keeps the attacker's own identifiers new on every route."""
    attacker = f"atk-{tag}"
    return [
        # the victim's email with a new external id and names: replaces its external id
        Naming(attacker, VICTIM, None, "Mal", "Lory", "subscribed"),
        # then the attacker's external id with the attacker's email: rewrites the email
        Naming(attacker, f"mallory-{tag}@evil.example"),
        # the victim's external id with another email and names
        Naming(VICTIM_EXTERNAL_ID, f"mallory2-{tag}@evil.example", None, "Mal", "Lory"),
        # the victim's email with another contact's external id: joins the two
        Naming(OTHER_EXTERNAL_ID, VICTIM),
        # the victim's visitor id moved to the attacker's new contact
        Naming(f"{attacker}-2", f"atk2-{tag}@evil.example", VICTIM_VISITOR),
        Naming(None, f"atk3-{tag}@evil.example", VICTIM_VISITOR),
        # the victim's email and status alone
        Naming(None, VICTIM, f"visitor-{tag}", status="subscribed"),
        # the victim subscribed to a list, by its email, with or without its visitor id
        Naming(None, VICTIM, list_id=list_id),
        Naming(None, VICTIM, VICTIM_VISITOR, list_id=list_id),
        Naming(VICTIM_EXTERNAL_ID, VICTIM, f"visitor-{tag}-l", list_id=list_id),
    ]


def _segment_message(kind: str, naming: Naming) -> dict[str, Any]:
    traits = {
        name: value
        for name, value in (
            ("email", naming.email),
            ("firstName", naming.first_name),
            ("lastName", naming.last_name),
            ("status", naming.status),
        )
        if value is not None
    }
    message: dict[str, Any] = {"type": kind, "messageId": str(uuid.uuid4())}
    if naming.external_id is not None:
        message["userId"] = naming.external_id
    if naming.anonymous_id is not None:
        message["anonymousId"] = naming.anonymous_id
    if kind == "identify":
        message["traits"] = traits
    else:
        message["context"] = {"traits": traits}
    if kind == "track":
        message["event"] = "probe"
    if kind == "group":
        message |= {"groupId": "g", "traits": traits}
    if kind == "alias":
        message = {
            "type": "alias",
            "userId": naming.external_id or naming.email,
            "previousId": naming.anonymous_id or VICTIM_VISITOR,
        }
    return message


SEGMENT_KINDS = {
    "track": "track",
    "t": "track",
    "identify": "identify",
    "i": "identify",
    "page": "page",
    "p": "page",
    "screen": "screen",
    "s": "screen",
    "alias": "alias",
    "a": "alias",
    "group": "group",
    "g": "group",
}


def _native_contact(naming: Naming) -> dict[str, Any]:
    named = {"email": naming.email, "external_id": naming.external_id}
    return {name: value for name, value in named.items() if value is not None}


def _native_traits(naming: Naming) -> dict[str, Any]:
    traits = {
        "first_name": naming.first_name,
        "last_name": naming.last_name,
        "status": naming.status,
    }
    return {name: value for name, value in traits.items() if value is not None}


def requests_for(method: str, path: str, key: str, naming: Naming) -> list[dict[str, Any]]:
    """The requests that say `naming` through this route, with the key as its dialect
    takes it."""
    if path.startswith("/segment/v1/"):
        short = path.removeprefix("/segment/v1/")
        auth = {"auth": (key, "")}
        if short in ("batch", "b"):
            kinds = sorted(set(SEGMENT_KINDS.values()))
            batch = [_segment_message(kind, naming) for kind in kinds]
            return [{**auth, "json": {"batch": batch}}]
        kind = SEGMENT_KINDS[short]
        return [{**auth, "json": _segment_message(kind, naming)}]
    if naming.list_id is not None and path not in LISTED:
        return []
    bearer = {"headers": {"Authorization": f"Bearer {key}"}}
    if path == "/v1/identify":
        contact = _native_contact(naming)
        visitor = naming.anonymous_id
        if not contact:
            # a contact named by a visitor id of its, which a new visitor id joins
            contact, visitor = {"anonymous_id": naming.anonymous_id}, None
        body = {
            "anonymous_id": visitor or f"visitor-{uuid.uuid4()}",
            "contact": contact,
            "traits": _native_traits(naming),
        }
        return [{**bearer, "json": body}]
    if path in ("/v1/track", "/v1/batch"):
        contact = _native_contact(naming)
        bodies = [{"event": "probe", "contact": contact}]
        if naming.anonymous_id is not None:
            bodies.append(
                {"event": "probe", "contact": {**contact, "anonymous_id": naming.anonymous_id}}
            )
        if path == "/v1/batch":
            return [{**bearer, "json": {"events": bodies}}]
        return [{**bearer, "json": body} for body in bodies]
    if path in ("/api/v1/event", "/api.php"):
        fields = {
            "APIKey": key,
            "Command": "event.track",
            "Email": naming.email,
            "ID": naming.external_id,
            "UUID": naming.anonymous_id,
            "ListID": naming.list_id,
        }
        properties = {"firstname": naming.first_name, "lastname": naming.last_name}
        sent = {name: value for name, value in fields.items() if value is not None}
        sent["Properties"] = orjson.dumps(
            {name: value for name, value in properties.items() if value is not None}
        ).decode()
        place = "params" if method == "GET" else "data"
        return [{place: sent | {"Event": event}} for event in ("identify", "viewed")]
    pytest.fail(f"{method} {path}: the test does not know how to name a contact there; teach it")


def ingest_routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Every route of the route table a publishable key is let in on (the others answer
    it 403: tests/test_publishable_keys.py)."""
    routes = [
        route
        for route in keyed_routes(client)
        if route in INGEST or route in OCTETH_LEGACY or route[1].startswith("/segment/")
    ]
    assert len(routes) >= 20
    return routes


@dataclass(frozen=True)
class Held:
    contacts: tuple[tuple[Any, ...], ...]
    visitors: frozenset[tuple[str, int]]
    memberships: frozenset[tuple[int, int]]

    def unchanged_since(self, before: Held) -> bool:
        """The same rows and lists, and every visitor id of theirs still theirs (a new
        visitor linked to one of them is what a publishable key may do)."""
        return (
            self.contacts == before.contacts
            and before.visitors <= self.visitors
            and self.memberships == before.memberships
        )


async def held(services: Services, account_id: int) -> Held:
    """The victim and the other contact as stored, with their visitor ids and lists."""
    async with services.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(contacts)
                .where(
                    contacts.c.account_id == account_id,
                    contacts.c.email.in_([VICTIM, OTHER]),
                )
                .order_by(contacts.c.id)
            )
        ).all()
        aliases = (
            await conn.execute(
                sa.select(contact_aliases.c.alias, contact_aliases.c.contact_id)
                .where(
                    contact_aliases.c.account_id == account_id,
                    contact_aliases.c.contact_id.in_([row.id for row in rows]),
                )
                .order_by(contact_aliases.c.id)
            )
        ).all()
        memberships = (
            await conn.execute(
                sa.select(list_members.c.list_id, list_members.c.contact_id).where(
                    list_members.c.account_id == account_id,
                    list_members.c.contact_id.in_([row.id for row in rows]),
                )
            )
        ).all()
    return Held(
        tuple(tuple(row) for row in rows),
        frozenset((a, c) for a, c in aliases),
        frozenset((list_id, c) for list_id, c in memberships),
    )


async def victims(client: httpx.AsyncClient, tenant: Tenant) -> int:
    """The victim and another contact, the victim with a visitor id; the id of a list
    neither is on."""
    for email, external_id in ((VICTIM, VICTIM_EXTERNAL_ID), (OTHER, OTHER_EXTERNAL_ID)):
        made = await client.post(
            "/v1/contacts",
            headers=tenant.headers,
            json={
                "email": email,
                "external_id": external_id,
                "first_name": "Vic",
                "last_name": "Tim",
                "status": "unsubscribed",
            },
        )
        assert made.status_code == 201, made.text
    linked = await client.post(
        "/v1/identify",
        headers=tenant.headers,
        json={"anonymous_id": VICTIM_VISITOR, "contact": {"email": VICTIM}},
    )
    assert linked.status_code == 200, linked.text
    newsletter = await client.post("/v1/lists", headers=tenant.headers, json={"name": "News"})
    assert newsletter.status_code == 201, newsletter.text
    list_id: int = newsletter.json()["id"]
    return list_id


async def test_no_ingest_route_lets_a_publishable_key_change_or_move_an_identity(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    list_id = await victims(client, tenant)
    before = await held(services, tenant.id)
    key = await publishable_key(services, tenant.id)
    tried = 0
    for index, (method, path) in enumerate(ingest_routes(client)):
        for naming in takeovers(str(index), list_id):
            for request in requests_for(method, path, key, naming):
                response = await client.request(method, path, **request)
                where = (method, path, naming, response.status_code, response.text)
                assert response.status_code < 500, where
                assert response.status_code not in (401, 403), where
                tried += 1
                assert (await held(services, tenant.id)).unchanged_since(before), where
    assert tried > 200


async def contact_by_email(services: Services, account_id: int, email: str) -> Any:
    async with services.db.read() as conn:
        return (
            await conn.execute(
                sa.select(contacts).where(
                    contacts.c.account_id == account_id, contacts.c.email == email
                )
            )
        ).one_or_none()


async def test_segment_identify_twice_does_not_take_over_a_contact(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await victims(client, tenant)
    before = await held(services, tenant.id)
    key = await publishable_key(services, tenant.id)
    for email in (VICTIM, "mallory@evil.example"):
        answer = await client.post(
            "/segment/v1/identify",
            auth=(key, ""),
            json={"userId": "atk", "traits": {"email": email}},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"success": True}
    assert (await held(services, tenant.id)).unchanged_since(before)
    # the second identify named a contact nobody had: it is a new one of its own
    mallory = await contact_by_email(services, tenant.id, "mallory@evil.example")
    assert mallory.external_id == "atk"
    # what the key asked of the victim is kept for the account to see, not applied
    listed = await client.get("/v1/dropped-events", headers=tenant.headers)
    refused = [item for item in listed.json()["data"] if item["reason"] == dropped.CHANGE_REFUSED]
    assert [item["payload"]["refused"] for item in refused] == [{"external_id": "atk"}]
    assert refused[0]["source"] == "segment"
    # it names the victim, so erasing the victim erases it
    victim = await contact_by_email(services, tenant.id, VICTIM)
    erased = await client.delete(f"/v1/contacts/{victim.id}", headers=tenant.headers)
    assert erased.status_code == 204
    listed = await client.get("/v1/dropped-events", headers=tenant.headers)
    assert dropped.CHANGE_REFUSED not in [item["reason"] for item in listed.json()["data"]]


async def test_octeth_event_track_with_id_and_email_does_not_take_over_a_contact(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await victims(client, tenant)
    before = await held(services, tenant.id)
    key = await publishable_key(services, tenant.id)
    for email in (VICTIM, "mallory@evil.example"):
        answer = await client.post(
            "/api/v1/event",
            data={
                "APIKey": key,
                "Command": "event.track",
                "Event": "x",
                "ID": "atk",
                "Email": email,
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "success"
    # and by the victim's external id, a new email and names
    answer = await client.post(
        "/api/v1/event",
        data={
            "APIKey": key,
            "Event": "identify",
            "ID": VICTIM_EXTERNAL_ID,
            "Email": "mallory2@evil.example",
            "Properties": '{"firstname": "Mal"}',
        },
    )
    assert answer.status_code == 200, answer.text
    assert (await held(services, tenant.id)).unchanged_since(before)
    # the event is still recorded, on the victim the request named
    [victim] = (
        await client.get("/v1/contacts", headers=tenant.headers, params={"email": VICTIM})
    ).json()["data"]
    timeline = await client.get(f"/v1/contacts/{victim['id']}/events", headers=tenant.headers)
    assert "x" in [event["event"] for event in timeline.json()["data"]]


async def test_native_identify_with_a_publishable_key_does_not_resubscribe(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await victims(client, tenant)
    before = await held(services, tenant.id)
    key = await publishable_key(services, tenant.id)
    answer = await client.post(
        "/v1/identify",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "anonymous_id": "fresh-visitor",
            "contact": {"email": VICTIM},
            "traits": {"status": "subscribed", "first_name": "Mal"},
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"identified": True}
    after = await held(services, tenant.id)
    assert after.unchanged_since(before)
    # linking a new visitor to the contact is what the key may do
    assert ("fresh-visitor", after.contacts[0][0]) in after.visitors
    # a contact the key creates takes the traits it is given
    created = await client.post(
        "/v1/identify",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "anonymous_id": "new-visitor",
            "contact": {"email": "new@corp.com"},
            "traits": {"first_name": "Nia", "status": "pending"},
        },
    )
    assert created.status_code == 200, created.text
    new = await contact_by_email(services, tenant.id, "new@corp.com")
    assert (new.first_name, new.status) == ("Nia", "pending")


async def test_a_secret_key_still_changes_a_contact_through_the_same_routes(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await victims(client, tenant)
    answer = await client.post(
        "/segment/v1/identify",
        auth=(tenant.key, ""),
        json={"userId": "new-ext", "traits": {"email": VICTIM, "firstName": "Vera"}},
    )
    assert answer.status_code == 200, answer.text
    victim = await contact_by_email(services, tenant.id, VICTIM)
    assert (victim.external_id, victim.first_name) == ("new-ext", "Vera")
    native = await client.post(
        "/v1/identify",
        headers=tenant.headers,
        json={
            "anonymous_id": "v2",
            "contact": {"email": VICTIM},
            "traits": {"status": "subscribed"},
        },
    )
    assert native.json()["status"] == "subscribed"


def _answer_pairs(tag: str, list_id: int) -> list[tuple[Naming, Naming]]:
    """(known, unknown): the same request, naming a held contact, visitor id or list, or
    one nobody has."""
    new = f"new-{tag}"
    unknown_list = list_id + UNKNOWN_LIST
    return [
        (Naming(None, VICTIM), Naming(None, f"{new}@corp.com")),
        (Naming(VICTIM_EXTERNAL_ID, None), Naming(f"{new}-ext", None)),
        (Naming(f"{new}-a", VICTIM), Naming(f"{new}-b", f"{new}-b@corp.com")),
        (Naming(OTHER_EXTERNAL_ID, VICTIM), Naming(f"{new}-c", f"{new}-c@corp.com")),
        (Naming(VICTIM_EXTERNAL_ID, f"{new}-e@corp.com"), Naming(f"{new}-f", f"{new}-f@corp.com")),
        (
            Naming(None, VICTIM, f"v-{tag}-1", first_name="Mal"),
            Naming(None, f"{new}-d@corp.com", f"v-{tag}-2", first_name="Mal"),
        ),
        # a visitor id linked to an identified contact, said with a new email or external id
        (
            Naming(None, f"{new}-g@corp.com", VICTIM_VISITOR),
            Naming(None, f"{new}-h@corp.com", f"v-{tag}-3"),
        ),
        (Naming(f"{new}-i", None, VICTIM_VISITOR), Naming(f"{new}-j", None, f"v-{tag}-4")),
        # a contact named by a visitor id alone
        (Naming(None, None, VICTIM_VISITOR), Naming(None, None, f"v-{tag}-5")),
        # a list held or not, for a held contact and for a new one
        (Naming(None, VICTIM, list_id=list_id), Naming(None, VICTIM, list_id=unknown_list)),
        (Naming(None, VICTIM, list_id=list_id), Naming(None, f"{new}-k@corp.com", list_id=list_id)),
        (
            Naming(None, f"{new}-l@corp.com", list_id=list_id),
            Naming(None, f"{new}-m@corp.com", list_id=unknown_list),
        ),
        (
            Naming(None, VICTIM, VICTIM_VISITOR, list_id=list_id),
            Naming(None, f"{new}-n@corp.com", f"v-{tag}-6", list_id=unknown_list),
        ),
    ]


UUIDS = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMES = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _as_compared(content: bytes, naming: Naming) -> bytes:
    """The answer without what the request itself said or made up on the spot: the
    visitor id it named, a visitor id made up for it, and when it was received."""
    for said in (naming.anonymous_id, naming.external_id):
        if said is not None:
            content = content.replace(said.encode(), b"<said>")
    return TIMES.sub(b"<now>", UUIDS.sub(b"<new visitor id>", content))


async def test_answers_to_a_publishable_key_are_the_same_for_held_and_unknown_contacts(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    list_id = await victims(client, tenant)
    key = await publishable_key(services, tenant.id)
    compared = 0
    for index, (method, path) in enumerate(ingest_routes(client)):
        for known, unknown in _answer_pairs(str(index), list_id):
            for sent_known, sent_unknown in zip(
                requests_for(method, path, key, known),
                requests_for(method, path, key, unknown),
                strict=True,
            ):
                answers = []
                for naming, request in ((known, sent_known), (unknown, sent_unknown)):
                    response = await client.request(method, path, **request)
                    if naming.anonymous_id != VICTIM_VISITOR:
                        assert VICTIM_VISITOR.encode() not in response.content, (
                            path,
                            response.text,
                        )
                    assert b"contact_id" not in response.content, (path, response.text)
                    answers.append((response.status_code, _as_compared(response.content, naming)))
                assert answers[0] == answers[1], (method, path, known, answers)
                compared += 1
    assert compared > 250


async def dropped_reasons(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    listed = await client.get("/v1/dropped-events", headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


async def lists_of(client: httpx.AsyncClient, tenant: Tenant, email: str) -> list[int]:
    [contact] = (
        await client.get("/v1/contacts", headers=tenant.headers, params={"email": email})
    ).json()["data"]
    details = await client.get(f"/v1/contacts/{contact['id']}", headers=tenant.headers)
    list_ids: list[int] = details.json()["list_ids"]
    return list_ids


async def test_an_octeth_list_id_puts_only_the_contact_the_key_creates_on_the_list(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    list_id = await victims(client, tenant)
    key = await publishable_key(services, tenant.id)

    async def track(**fields: Any) -> httpx.Response:
        sent = {"APIKey": key, "Command": "event.track", "Event": "signup", **fields}
        return await client.post("/api/v1/event", data=sent)

    for email in (VICTIM, "newcomer@corp.com"):
        answer = await track(Email=email, ListID=list_id)
        assert answer.status_code == 200, answer.text
    assert await lists_of(client, tenant, VICTIM) == []
    assert await lists_of(client, tenant, "newcomer@corp.com") == [list_id]
    [refused] = await dropped_reasons(client, tenant)
    assert refused["reason"] == dropped.CHANGE_REFUSED
    assert refused["payload"]["refused"] == {"list_ids": [list_id]}
    assert refused["payload"]["contact"]["email"] == VICTIM
    # a list nobody has, or no list at all, is answered as one that exists, and recorded
    for unknown in (list_id + UNKNOWN_LIST, 0, 2**64):
        answer = await track(Email="stranger@corp.com", ListID=unknown, UUID="stranger")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "success"
    assert await lists_of(client, tenant, "stranger@corp.com") == []
    ignored = [d for d in await dropped_reasons(client, tenant) if d["reason"] == "unknown_list"]
    assert sorted(int(d["payload"]["ListID"]) for d in ignored) == [
        0,
        list_id + UNKNOWN_LIST,
        2**64,
    ]
    # a secret key is still told (Octeth's code 4)
    answer = await client.post(
        "/api/v1/event",
        data={"APIKey": tenant.key, "Event": "x", "ListID": list_id + UNKNOWN_LIST},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json() == {"Errors": [{"Code": 4, "Message": "Invalid ListID parameter"}]}


async def test_a_visitor_on_a_list_linked_to_a_held_contact_does_not_bring_the_list(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    list_id = await victims(client, tenant)
    key = await publishable_key(services, tenant.id)
    bearer = {"Authorization": f"Bearer {key}"}
    for visitor, email in (("on-list-1", VICTIM), ("on-list-2", "fresh@corp.com")):
        tracked = await client.post(
            "/v1/track",
            headers=bearer,
            json={"event": "seen", "contact": {"anonymous_id": visitor}},
        )
        assert tracked.status_code == 201, tracked.text
        # put on the list by the account (an automation, say)
        anonymous = (await client.get("/v1/contacts", headers=tenant.headers)).json()["data"][-1]
        added = await client.put(
            f"/v1/lists/{list_id}/contacts/{anonymous['id']}", headers=tenant.headers
        )
        assert added.status_code == 201, added.text
        identified = await client.post(
            "/v1/identify",
            headers=bearer,
            json={"anonymous_id": visitor, "contact": {"email": email}},
        )
        assert identified.json() == {"identified": True}
    assert await lists_of(client, tenant, VICTIM) == []
    assert await lists_of(client, tenant, "fresh@corp.com") == [list_id]
    [refused] = await dropped_reasons(client, tenant)
    assert refused["payload"]["refused"] == {"list_ids": [list_id]}


async def test_a_refused_link_is_answered_as_usual_to_a_publishable_key_and_recorded(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await victims(client, tenant)
    before = await held(services, tenant.id)
    key = await publishable_key(services, tenant.id)
    requests: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (
            "/v1/identify",
            {"json": {"anonymous_id": VICTIM_VISITOR, "contact": {"email": "mal@evil.example"}}},
            {"status_code": 409, "reason": dropped.IDENTITY_CONFLICT},
        ),
        (
            "/v1/identify",
            {"json": {"anonymous_id": "mal-visitor", "contact": {"anonymous_id": "nobody"}}},
            {"status_code": 404, "reason": dropped.UNKNOWN_CONTACT},
        ),
        (
            "/api/v1/event",
            {"data": {"Event": "x", "UUID": VICTIM_VISITOR, "Email": "mal2@evil.example"}},
            {"status_code": 409, "reason": dropped.IDENTITY_CONFLICT},
        ),
        (
            "/segment/v1/identify",
            {"json": {"anonymousId": VICTIM_VISITOR, "traits": {"email": "mal3@evil.example"}}},
            {"status_code": 200, "reason": dropped.IDENTITY_CONFLICT},
        ),
    ]
    for path, request, secret in requests:
        for credential in (tenant.key, key):
            presented: dict[str, Any] = (
                {"auth": (credential, "")}
                if path.startswith("/segment/")
                else {"headers": {"Authorization": f"Bearer {credential}"}}
            )
            answer = await client.post(path, **presented, **request)
            if credential == key:
                assert answer.status_code == 200, (path, answer.text)
            else:
                # a server holding a secret key is told
                assert answer.status_code == secret["status_code"], (path, answer.text)
        drops = await dropped_reasons(client, tenant)
        assert drops[0]["reason"] == secret["reason"], (path, drops)
    assert (await held(services, tenant.id)).unchanged_since(before)
    drops = await dropped_reasons(client, tenant)
    conflicts = [d for d in drops if d["source"] != "segment"]
    assert [(d["reason"], d["payload"]) for d in conflicts] == [
        (
            dropped.IDENTITY_CONFLICT,
            {"anonymous_id": VICTIM_VISITOR, "contact": {"email": "mal2@evil.example"}},
        ),
        (
            dropped.UNKNOWN_CONTACT,
            {"anonymous_id": "mal-visitor", "contact": {"anonymous_id": "nobody"}},
        ),
        (
            dropped.IDENTITY_CONFLICT,
            {"anonymous_id": VICTIM_VISITOR, "contact": {"email": "mal@evil.example"}},
        ),
    ]
    # the refusals name the victim's visitor id: erasing the victim erases them
    victim = await contact_by_email(services, tenant.id, VICTIM)
    erased = await client.delete(f"/v1/contacts/{victim.id}", headers=tenant.headers)
    assert erased.status_code == 204
    left = [d["payload"].get("anonymous_id") for d in await dropped_reasons(client, tenant)]
    assert VICTIM_VISITOR not in left
