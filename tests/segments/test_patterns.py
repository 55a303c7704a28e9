"""Segment patterns mean the same on SQLite (RE2) and PostgreSQL: a common subset is
taken when saved, and a pattern saved before that makes its segment broken, not a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support import Tenant
from tests.web.test_dashboard_isolation import PASSWORD, sign_in
from trackbook.accounts import users
from trackbook.db.tables import automations as automations_table
from trackbook.db.tables import segments as segments_table
from trackbook.errors import Invalid
from trackbook.segments import service as segments
from trackbook.services import Services


def _regex(pattern: str) -> dict[str, Any]:
    return {"all": [{"value": {"event": "rx", "op": "regex", "value": pattern}}]}


# each taken by RE2, and refused or read otherwise by PostgreSQL
REFUSED = {
    r"\p{L}": r"\p",
    r"\pN": r"\p",
    r"(?i:abc)": "flag group",
    r"(?P<n>x)": "named group",
    r"(?U)a+": "flag group",
    r"\z": r"\z",
    r"\C": r"\C",
    r"\Q*\E": r"\Q",
    r"[\d-z]": "range with a class escape",
    r"\x{10FFFF}": r"\x",
    r"(?-s:.)": "flag group",
    r"\bvip\b": r"\b",
}


@pytest.mark.parametrize("pattern", REFUSED)
async def test_a_pattern_the_databases_read_differently_is_refused_when_saved(
    client: httpx.AsyncClient, tenant: Tenant, pattern: str
) -> None:
    saved = await client.post(
        "/v1/segments", headers=tenant.headers, json={"name": "S", "definition": _regex(pattern)}
    )
    assert saved.status_code == 422, saved.text
    error = saved.json()["error"]
    assert error["field"] == "definition.all.0.value.value"
    assert REFUSED[pattern] in error["message"]
    previewed = await client.post(
        "/v1/segments/preview", headers=tenant.headers, json={"definition": _regex(pattern)}
    )
    assert previewed.status_code == 422, previewed.text
    listed = await client.get("/v1/segments", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_an_automation_condition_takes_the_same_patterns(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await client.post(
        "/v1/automations",
        headers=tenant.headers,
        json={
            "name": "VIP",
            "trigger": {"event": "rx"},
            "conditions": {"match": [{"value": {"op": "regex", "value": r"\bvip"}}]},
            "actions": [{"type": "add_tag", "tag": "vip"}],
        },
    )
    assert created.status_code == 422, created.text
    assert created.json()["error"]["field"] == "conditions.match.0.value.value"


VALUES = {
    "abz@example.com": "abz",
    "newline@example.com": "a\nz",
    "bob@example.com": "bob@example.com",
    "shout@example.com": "ADA@EXAMPLE.COM",
    "vip@example.com": "VIP customer",
    "vip2@example.com": "a vip",
    "kelvin@example.com": "\u212ait",  # KELVIN SIGN, which RE2's (?i) folds to k
    "digits@example.com": "order 12345",
    "short@example.com": "12",
    "cafe@example.com": "café",
}
COMMON = {
    "^a.*z$": ["abz@example.com"],
    r"[a-z]+@example\.com": ["bob@example.com"],
    "(?i)vip": ["vip2@example.com", "vip@example.com"],
    r"\d{3}": ["digits@example.com"],
    r"^\w+$": ["abz@example.com", "short@example.com"],
    "(?i)^kit$": [],
}


async def test_common_patterns_hold_the_same_contacts_on_both_databases(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    tracked = await client.post(
        "/v1/batch",
        headers=tenant.headers,
        json={
            "events": [
                {"event": "rx", "contact": {"email": email}, "value": value}
                for email, value in VALUES.items()
            ]
        },
    )
    assert {r["status"] for r in tracked.json()["results"]} == {"created"}, tracked.text
    held = {}
    for index, pattern in enumerate(COMMON):
        saved = await client.post(
            "/v1/segments",
            headers=tenant.headers,
            json={"name": f"S{index}", "definition": _regex(pattern)},
        )
        assert saved.status_code == 201, saved.text
        members = await client.get(
            f"/v1/segments/{saved.json()['id']}/contacts", headers=tenant.headers
        )
        count = await client.get(f"/v1/segments/{saved.json()['id']}/count", headers=tenant.headers)
        held[pattern] = sorted(c["email"] for c in members.json()["data"])
        assert count.json()["count"] == len(held[pattern])
    assert held == COMMON


async def test_a_pattern_saved_before_postgresql_was_asked_marks_its_segment_broken(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, backend: str
) -> None:
    await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "rx", "contact": {"email": "greek@example.com"}, "value": "αβγ"},
    )
    now = services.clock.now()
    async with services.db.transaction() as conn:
        segment_id = await conn.scalar(
            sa.insert(segments_table)
            .values(
                account_id=tenant.id,
                name="Greek",
                definition=_regex(r"\p{Greek}"),
                created_at=now,
                updated_at=now,
            )
            .returning(segments_table.c.id)
        )
    counted = await client.get(f"/v1/segments/{segment_id}/count", headers=tenant.headers)
    members = await client.get(f"/v1/segments/{segment_id}/contacts", headers=tenant.headers)
    email = f"marketer{tenant.id}@example.com"
    await services.db.write(users.create_user, tenant.id, email, PASSWORD, now=now)
    await sign_in(client, email)
    page = await client.get("/segments")
    assert page.status_code == 200, page.text
    if backend == "sqlite":  # RE2 runs it as it always has
        assert (counted.status_code, counted.json()["count"]) == (200, 1)
        assert members.status_code == 200
        assert "broken" not in page.text
        return
    assert counted.status_code == 422, counted.text
    error = counted.json()["error"]
    assert error["code"] == "segment_broken"
    assert f"segment {segment_id} ('Greek')" in error["message"]
    assert members.status_code == 422
    assert "broken" in page.text
    assert f"segment {segment_id} (&#39;Greek&#39;) cannot be evaluated" in page.text
    # mended by saving a pattern both read alike
    mended = await client.patch(
        f"/v1/segments/{segment_id}",
        headers=tenant.headers,
        json={"definition": _regex("[αβγ]")},
    )
    assert mended.status_code == 200, mended.text
    counted = await client.get(f"/v1/segments/{segment_id}/count", headers=tenant.headers)
    assert (counted.status_code, counted.json()["count"]) == (200, 1)


async def test_postgresql_is_asked_when_a_pattern_is_saved(
    services: Services, backend: str
) -> None:
    # RE2 and the subset take every pattern PostgreSQL refuses that we know of; this is
    # the check behind them, asked of the database itself
    async with services.db.transaction() as conn:
        if backend == "sqlite":
            await segments.check_patterns(conn, [("definition.x", r"\p{L}")])
            return
        with pytest.raises(Invalid) as refused:
            await segments.check_patterns(conn, [("definition.x", r"\p{L}")])
        assert refused.value.field == "definition.x"
        assert "PostgreSQL" in refused.value.reason
        # the transaction goes on after the refusal
        assert await conn.scalar(sa.text("SELECT 1")) == 1


async def test_an_automation_saved_with_an_old_pattern_still_runs_and_can_be_changed(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    # guards the read side: conditions stored before the subset are run as written,
    # never refused while the event that starts them is being stored
    now = services.clock.now()
    async with services.db.transaction() as conn:
        automation_id = await conn.scalar(
            sa.insert(automations_table)
            .values(
                account_id=tenant.id,
                name="Old VIP",
                trigger_event="rx",
                conditions={"match": [{"value": {"op": "regex", "value": r"\bvip"}}]},
                frequency="every_time",
                actions=[{"type": "add_tag", "tag": "vip"}],
                created_at=now,
                updated_at=now,
            )
            .returning(automations_table.c.id)
        )
    tracked = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "rx", "contact": {"email": "old@example.com"}, "value": "vip"},
    )
    assert tracked.status_code in (200, 201, 202), tracked.text
    disabled = await client.patch(
        f"/v1/automations/{automation_id}", headers=tenant.headers, json={"enabled": False}
    )
    assert disabled.status_code == 200, disabled.text
    changed = await client.patch(
        f"/v1/automations/{automation_id}",
        headers=tenant.headers,
        json={"conditions": {"match": [{"value": {"op": "regex", "value": r"\bvip"}}]}},
    )
    assert changed.status_code == 422, changed.text
