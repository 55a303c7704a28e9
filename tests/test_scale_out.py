"""Scale-out: two API processes and two workers on one PostgreSQL and one Redis.
Events go in through both nodes, the rate limit is one limit across them, and every
automation run is carried out once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.automations.conftest import WebhookReceiver
from tests.conftest import _new_database
from tests.test_crash import Server
from trackbook.db.engine import Database
from trackbook.db.tables import automation_runs

LIMIT = 150
EVENTS = 60


@pytest.fixture
def postgres_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend != "postgresql":
        pytest.skip("scale-out is PostgreSQL with Redis")
    url, remove = _new_database(backend, tmp_path)
    yield url
    remove()


async def test_two_api_nodes_and_two_workers_share_limits_and_run_each_automation_once(
    postgres_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    url = postgres_url
    shared = {
        "TRACKBOOK_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TRACKBOOK_REDIS_KEY_PREFIX": f"trackbook-scale-{uuid.uuid4().hex}",
        "TRACKBOOK_RATE_LIMIT_NATIVE": f"{LIMIT}/minute",
        "TRACKBOOK_WEBHOOK_ALLOW_PRIVATE": "true",
        "TRACKBOOK_WORKER_POLL_SECONDS": "0.1",
    }
    first = Server(url, tmp_path, env=shared)
    second = Server(url, tmp_path, env=shared)
    workers = [Server(url, tmp_path, command=("worker",), env=shared) for _ in range(2)]
    processes = [first, second, *workers]
    try:
        first.start()
        await first.ready()
        headers = {"Authorization": f"Bearer {first.key()}"}
        second.start()
        for worker in workers:
            worker.start()
        await second.ready()
        async with (
            httpx.AsyncClient(base_url=first.base, timeout=10) as one,
            httpx.AsyncClient(base_url=second.base, timeout=10) as two,
        ):
            hook = await one.post("/v1/webhooks", headers=headers, json={"url": receiver.url})
            automation = await two.post(
                "/v1/automations",
                headers=headers,
                json={
                    "name": "Every visit",
                    "trigger": {"event": "visit"},
                    "actions": [{"type": "webhook", "webhook_id": hook.json()["id"]}],
                },
            )
            assert automation.status_code == 201, automation.text
            tracked = await asyncio.gather(
                *(
                    (one if n % 2 else two).post(
                        "/v1/track",
                        headers=headers,
                        json={"event": "visit", "contact": {"email": f"v{n}@example.com"}},
                    )
                    for n in range(EVENTS)
                )
            )
            assert {response.status_code for response in tracked} == {201}
            # the limit is shared: what is left of it is spent through either node
            answers = []
            for n in range(LIMIT):
                response = await (one if n % 2 else two).get("/v1/account", headers=headers)
                answers.append(response.status_code)
                if response.status_code == 429:
                    break
            assert answers.count(200) == LIMIT - EVENTS - 2  # webhook + automation counted
            assert answers[-1] == 429

        # the API is rate limited now: watch the runs in the database itself
        db = Database(url)
        try:
            for _ in range(600):
                async with db.read() as conn:
                    statuses = Counter(
                        dict(
                            (
                                await conn.execute(
                                    sa.select(automation_runs.c.status, sa.func.count()).group_by(
                                        automation_runs.c.status
                                    )
                                )
                            ).all()
                        )
                    )
                if statuses == {"done": EVENTS}:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"runs not all done: {statuses}")
        finally:
            await db.dispose()
        ids = Counter(received.headers["webhook-id"] for received in receiver.received)
        assert len(ids) == EVENTS
        assert set(ids.values()) == {1}
    finally:
        for process in processes:
            if process.process is not None and process.process.poll() is None:
                process.kill()
