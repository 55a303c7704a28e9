"""/metrics in Prometheus format, and one JSON log line per request."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Tenant
from trackbook import logs
from trackbook.accounts import service as accounts
from trackbook.services import Services


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def events(scraped: dict, dialect: str, outcome: str) -> float:
    key = ("trackbook_events_total", frozenset({("dialect", dialect), ("outcome", outcome)}))
    return scraped.get(key, 0.0)


async def test_metrics_count_events_by_dialect_and_outcome(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    before = await scrape(client)
    body = {"event": "signup", "contact": {"email": "m@example.com"}, "message_id": "m-1"}
    for _ in range(2):
        await client.post("/v1/track", headers=tenant.headers, json=body)
    account = await services.db.query(accounts.get_account, tenant.id)
    await client.post(
        "/event",
        data={
            "actid": account.actid,
            "key": services.keyring.open(account.sealed_event_key),
            "event": "x",
            "visit[email]": "nobody@example.com",
        },
    )
    after = await scrape(client)
    assert events(after, "native", "accepted") - events(before, "native", "accepted") == 1
    assert events(after, "native", "duplicate") - events(before, "native", "duplicate") == 1
    dropped = events(after, "activecampaign", "dropped") - events(
        before, "activecampaign", "dropped"
    )
    assert dropped == 1
    track_requests = [
        value
        for (name, labels), value in after.items()
        if name == "trackbook_http_request_duration_seconds_count"
        and ("route", "/v1/track") in labels
    ]
    assert sum(track_requests) >= 2
    assert any(name == "trackbook_group_commit_events_count" for name, _ in after)
    assert ("trackbook_outbox_pending", frozenset({("kind", "runs")})) in after


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("info")
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


async def test_one_json_log_line_per_request_with_account_route_status_and_duration(
    client: httpx.AsyncClient, tenant: Tenant, json_logs: io.StringIO
) -> None:
    await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "login", "contact": {"email": "l@example.com"}},
    )
    await client.get("/v1/contacts/999999999", headers=tenant.headers)
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    requests = [line for line in lines if line["logger"] == "trackbook.requests"]
    assert [(r["route"], r["status"], r["account"]) for r in requests] == [
        ("/v1/track", 201, tenant.id),
        ("/v1/contacts/{contact_id}", 404, tenant.id),
    ]
    assert all(r["duration_ms"] >= 0 and r["level"] == "INFO" for r in requests)
