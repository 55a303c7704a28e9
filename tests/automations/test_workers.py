"""Workers as they run in production: killed mid-delivery, and several at once."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx

from tests.automations.conftest import WebhookReceiver
from tests.automations.test_end_to_end import create_automation, runs_of
from tests.support import SERVER_KEY, ManualClock, Tenant
from trackbook.services import Services
from trackbook.settings import Settings


async def start_worker(database_url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "trackbook",
        "worker",
        env={
            **os.environ,
            "TRACKBOOK_DATABASE_URL": database_url,
            "TRACKBOOK_SECRET_KEY": SERVER_KEY,
            "TRACKBOOK_WEBHOOK_ALLOW_PRIVATE": "true",
            "TRACKBOOK_WORKER_LEASE_SECONDS": "2",
            "TRACKBOOK_WORKER_POLL_SECONDS": "0.1",
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_worker_killed_mid_delivery_delivers_once_more_with_the_same_id(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: WebhookReceiver,
    database_url: str,
) -> None:
    hook = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    automation_id = await create_automation(
        client,
        tenant,
        name="Notify",
        trigger={"event": "order"},
        actions=[{"type": "webhook", "webhook_id": hook.json()["id"]}],
    )
    await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "order", "contact": {"email": "k@example.com"}},
    )
    receiver.hold = asyncio.Event()
    first = await start_worker(database_url)
    try:

        async def arrived() -> bool:
            return bool(receiver.received)

        await until(arrived, "the first worker's delivery")
    finally:
        first.kill()  # SIGKILL while the receiver holds the request open
        await first.wait()
    receiver.hold.set()

    second = await start_worker(database_url)
    try:

        async def run_done() -> bool:
            [run] = await runs_of(client, tenant, automation_id)
            return bool(run["status"] == "done")

        await until(run_done, "the run to be done by the second worker")
        await asyncio.sleep(0.5)  # time for a wrong third delivery to show up
    finally:
        second.terminate()
        await second.wait()
    assert len(receiver.received) == 2
    ids = {received.headers["webhook-id"] for received in receiver.received}
    assert len(ids) == 1
    deliveries = await client.get(
        f"/v1/webhooks/{hook.json()['id']}/deliveries", headers=tenant.headers
    )
    [delivery] = deliveries.json()["data"]
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [200]  # the killed one left none


async def test_two_workers_never_deliver_one_run_twice(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: WebhookReceiver,
    settings: Settings,
    clock: ManualClock,
) -> None:
    hook = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    automation_id = await create_automation(
        client,
        tenant,
        name="Fan out",
        trigger={"event": "visit"},
        actions=[{"type": "webhook", "webhook_id": hook.json()["id"]}],
    )
    response = await client.post(
        "/v1/batch",
        headers=tenant.headers,
        json={
            "events": [
                {"event": "visit", "contact": {"email": f"v{n}@example.com"}} for n in range(60)
            ]
        },
    )
    assert response.status_code == 200, response.text
    workers = [Services.build(settings, clock) for _ in range(2)]
    for services in workers:
        await services.start()

    async def work(services: Services) -> int:
        done = 0
        while handled := await services.worker.run_once():
            done += handled
        return done

    try:
        shares = await asyncio.gather(*(work(services) for services in workers))
    finally:
        for services in workers:
            await services.stop()
    assert sum(shares) >= 60
    counts = Counter(received.headers["webhook-id"] for received in receiver.received)
    assert len(counts) == 60
    assert set(counts.values()) == {1}
    runs = await client.get(
        f"/v1/automations/{automation_id}/runs?limit=100", headers=tenant.headers
    )
    assert Counter(run["status"] for run in runs.json()["data"]) == {"done": 60}
