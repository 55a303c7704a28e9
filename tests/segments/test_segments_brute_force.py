"""Segments against a brute-force evaluation in Python of the same definitions, on
generated data, on both databases."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import ManualClock, Tenant
from trackbook.contacts import service as contacts
from trackbook.services import Services

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NAMES = ["open", "click", "buy"]
TITLES = [None, "t1", "t2"]
VALUES = [None, "5", "12.5", "abc", "Hello", "-3"]
DOMAINS = ["a.io", "b.com"]
STATUSES = ["subscribed", "unsubscribed"]
NUMBER = re.compile(r"^\s*-?[0-9]+(\.[0-9]+)?\s*$")


@dataclass
class Person:
    email: str
    status: str
    events: list[dict[str, Any]] = field(default_factory=list)
    lists: set[int] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    id: int = 0


def _world(rng: random.Random) -> list[Person]:
    people = []
    for n in range(30):
        person = Person(f"p{n}@{rng.choice(DOMAINS)}", rng.choice(STATUSES))
        for _ in range(rng.randint(0, 8)):
            properties: dict[str, Any] = {}
            if rng.random() < 0.7:
                properties["p"] = rng.choice([1, 7, 30, "x", "yes", "Hello"])
            if rng.random() < 0.4:
                properties["n"] = {"x": rng.choice([2, 9, "deep"])}
            person.events.append(
                {
                    "name": rng.choice(NAMES),
                    "title": rng.choice(TITLES),
                    "value": rng.choice(VALUES),
                    "properties": properties,
                    "occurred_at": NOW
                    - timedelta(days=rng.randint(0, 60), hours=rng.randint(0, 23)),
                }
            )
        people.append(person)
    return people


@pytest.fixture
async def world(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, clock: ManualClock
) -> list[Person]:
    clock.set(NOW)
    people = _world(random.Random(20261123))
    list_ids = []
    for name in ("L1", "L2"):
        created = await client.post("/v1/lists", headers=tenant.headers, json={"name": name})
        list_ids.append(created.json()["id"])
    rng = random.Random(7)
    for person in people:
        created = await client.post(
            "/v1/contacts",
            headers=tenant.headers,
            json={"email": person.email, "status": person.status},
        )
        person.id = created.json()["id"]
        events = [
            {
                "event": e["name"],
                "title": e["title"],
                "value": e["value"],
                "properties": e["properties"],
                "contact": {"id": person.id},
                "timestamp": e["occurred_at"].isoformat(),
            }
            for e in person.events
        ]
        if events:
            await client.post("/v1/batch", headers=tenant.headers, json={"events": events})
        for list_id in list_ids:
            if rng.random() < 0.4:
                person.lists.add(list_id)
                await client.put(
                    f"/v1/lists/{list_id}/contacts/{person.id}", headers=tenant.headers
                )
        chosen = {tag for tag in ("vip", "beta") if rng.random() < 0.3}
        if chosen:
            person.tags = chosen
            await services.db.write(contacts.tag_contact, tenant.id, person.id, chosen, now=NOW)
    return people


# --- the same semantics, in Python ------------------------------------------------


def _in_window(event: dict[str, Any], window: dict[str, Any] | None) -> bool:
    if window is None:
        return True
    if "last" in window:
        return bool(event["occurred_at"] >= NOW - timedelta(**{window["unit"]: window["last"]}))
    start, end = (datetime.fromisoformat(t) for t in window["between"])
    return bool(start <= event["occurred_at"] <= end)


def _text(event: dict[str, Any], path: list[str] | None) -> str | None:
    if path is None:
        return event["value"]  # type: ignore[no-any-return]
    found: Any = event["properties"]
    for key in path:
        if not isinstance(found, dict) or key not in found:
            return None
        found = found[key]
    return None if found is None else str(found)


def _number(text: str | None) -> float | None:
    return float(text) if text is not None and NUMBER.match(text) else None


def _matches(text: str | None, op: str, value: Any) -> bool:
    number = _number(text)
    outcome: bool
    if op == "is_set":
        outcome = text is not None
    elif op == "is_not_set":
        outcome = text is None
    elif text is None:
        outcome = False
    elif op == "contains":
        outcome = value.lower() in text.lower()
    elif op == "not_contains":
        outcome = value.lower() not in text.lower()
    elif op == "regex":
        outcome = re.search(value, text) is not None
    elif op in (">", "<"):
        outcome = number is not None and (number > value if op == ">" else number < value)
    elif isinstance(value, int | float):
        outcome = number is not None and ((number == value) == (op == "equals"))
    else:
        outcome = (text == value) == (op == "equals")
    return outcome


def _count_ok(count: int, op: str, n: int) -> bool:
    return {
        "=": count == n,
        "!=": count != n,
        ">": count > n,
        ">=": count >= n,
        "<": count < n,
        "<=": count <= n,
    }[op]


def holds(person: Person, node: dict[str, Any]) -> bool:
    [(kind, body)] = node.items()
    if kind == "all":
        return all(holds(person, child) for child in body)
    if kind == "any":
        return any(holds(person, child) for child in body)
    if kind == "event":
        count = sum(
            1
            for e in person.events
            if e["name"] == body["name"]
            and (body.get("title") is None or e["title"] == body["title"])
            and _in_window(e, body.get("within"))
        )
        if "count" in body:
            return _count_ok(count, body["count"]["op"], body["count"]["value"])
        return count > 0 if body.get("performed", True) else count == 0
    if kind == "recency":
        times = [e["occurred_at"] for e in person.events if e["name"] == body["name"]]
        if not times:
            return False
        moment = min(times) if body["which"] == "first" else max(times)
        time = NOW - timedelta(**{body["time"]["unit"]: body["time"]["ago"]})
        return bool(moment < time if body["op"] == "before" else moment > time)
    if kind in ("property", "value"):
        path = body["path"].split(".") if kind == "property" else None
        return any(
            _matches(_text(e, path), body["op"], body.get("value"))
            for e in person.events
            if e["name"] == body["event"] and _in_window(e, body.get("within"))
        )
    if kind == "contact":
        column = {
            "email": person.email,
            "email_domain": person.email.split("@")[1],
            "status": person.status,
        }[body["field"]]
        return _matches(column, body["op"], body.get("value"))
    if kind == "list":
        return (body["id"] in person.lists) == body.get("member", True)
    return (body["name"] in person.tags) == body.get("member", True)


# --- definitions ----------------------------------------------------------------------

windows = st.sampled_from(
    [
        None,
        {"last": 7, "unit": "days"},
        {"last": 30, "unit": "days"},
        {"last": 36, "unit": "hours"},
        {"between": ["2026-04-15T00:00:00+00:00", "2026-05-20T00:00:00+00:00"]},
    ]
)
match_ops = st.sampled_from(
    [
        ("equals", "x"),
        ("equals", 7),
        ("not_equals", "Hello"),
        ("not_equals", 30),
        ("contains", "el"),
        ("not_contains", "y"),
        (">", 5),
        ("<", 8.5),
        ("regex", "^H"),
        ("is_set", None),
        ("is_not_set", None),
    ]
)


@st.composite
def conditions(draw: st.DrawFn, lists: list[int]) -> dict[str, Any]:  # noqa: PLR0912
    kind = draw(
        st.sampled_from(["event", "recency", "property", "value", "contact", "list", "tag"])
    )
    if kind == "event":
        body: dict[str, Any] = {"name": draw(st.sampled_from(NAMES))}
        if draw(st.booleans()):
            body["title"] = draw(st.sampled_from(["t1", "t2"]))
        if draw(st.booleans()):
            body["count"] = {
                "op": draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<="])),
                "value": draw(st.integers(0, 4)),
            }
        else:
            body["performed"] = draw(st.booleans())
        window = draw(windows)
        if window is not None:
            body["within"] = window
        return {"event": body}
    if kind == "recency":
        return {
            "recency": {
                "name": draw(st.sampled_from(NAMES)),
                "which": draw(st.sampled_from(["first", "last"])),
                "op": draw(st.sampled_from(["before", "after"])),
                "time": {"ago": draw(st.integers(1, 50)), "unit": "days"},
            }
        }
    if kind in ("property", "value"):
        op, value = draw(match_ops)
        body = {"event": draw(st.sampled_from(NAMES)), "op": op}
        if kind == "property":
            body["path"] = draw(st.sampled_from(["p", "n.x", "missing"]))
        if value is not None:
            body["value"] = value
        window = draw(windows)
        if window is not None:
            body["within"] = window
        return {kind: body}
    if kind == "contact":
        field_name = draw(st.sampled_from(["email", "email_domain", "status"]))
        op, value = draw(
            st.sampled_from(
                [
                    ("equals", "b.com"),
                    ("equals", "subscribed"),
                    ("not_equals", "a.io"),
                    ("contains", "1"),
                    ("not_contains", "sub"),
                    ("is_set", None),
                ]
            )
        )
        body = {"field": field_name, "op": op}
        if value is not None:
            body["value"] = value
        return {"contact": body}
    if kind == "list":
        return {"list": {"id": draw(st.sampled_from(lists)), "member": draw(st.booleans())}}
    return {"tag": {"name": draw(st.sampled_from(["vip", "beta"])), "member": draw(st.booleans())}}


def definitions(lists: list[int]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        conditions(lists),
        lambda children: st.builds(
            lambda mode, items: {mode: items},
            st.sampled_from(["all", "any"]),
            st.lists(children, min_size=1, max_size=3),
        ),
        max_leaves=6,
    ).map(lambda node: node if set(node) & {"all", "any"} else {"all": [node]})


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(data=st.data())
async def test_sql_and_python_agree(
    data: st.DataObject, client: httpx.AsyncClient, tenant: Tenant, world: list[Person]
) -> None:
    lists = sorted({list_id for person in world for list_id in person.lists}) or [0]
    definition = data.draw(definitions(lists))
    response = await client.post(
        "/v1/segments/preview",
        headers=tenant.headers,
        json={"definition": definition, "limit": 100},
    )
    assert response.status_code == 200, (definition, response.text)
    expected = sorted(person.id for person in world if holds(person, definition))
    found = [contact["id"] for contact in response.json()["contacts"]]
    assert found == expected, definition
    assert response.json()["count"] == len(expected)
