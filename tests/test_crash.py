"""Crash safety: the real server is killed with SIGKILL at random moments while clients
send events with message ids; clients retry what was not acknowledged. Every
acknowledged event must be stored exactly once, and nothing twice.

The short variant (4 kills) always runs; the long one (20 kills) is marked `long`:
`pytest -m long tests/test_crash.py`."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import _new_database
from tests.support import UNLIMITED, free_port
from trackbook.db.engine import Database
from trackbook.db.tables import event_message_ids, events

CLIENTS = 8
KEY = re.compile(r"tb_live_[A-Za-z0-9]{40}")


class Server:
    """`trackbook serve` as a user runs it, restartable after a kill."""

    def __init__(
        self,
        url: str,
        directory: Path,
        *,
        command: tuple[str, ...] = ("serve", "--no-worker"),
        env: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.directory = directory
        self.command = command
        self.env = env or {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / f"{command[0]}-{self.port}.log"

    def start(self) -> None:
        env = {f"TRACKBOOK_{name.upper()}": value for name, value in UNLIMITED.items()}
        port = ["--port", str(self.port)] if self.command[0] == "serve" else []
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["trackbook", *self.command, *port],
                env={**os.environ, "TRACKBOOK_DATABASE_URL": self.url, **env, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.base}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("trackbook serve did not come up:\n" + self.log.read_text())

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def key(self) -> str:
        found = KEY.search(self.log.read_text())
        assert found is not None, self.log.read_text()
        return found[0]


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[Server]:
    url, remove = _new_database(backend, tmp_path)
    running = Server(url, tmp_path)
    try:
        yield running
    finally:
        if running.process is not None and running.process.poll() is None:
            running.kill()
        remove()


@pytest.mark.parametrize(
    "kills", [pytest.param(4, id="short"), pytest.param(20, id="long", marks=pytest.mark.long)]
)
async def test_killed_server_loses_and_duplicates_nothing_it_acknowledged(
    server: Server, kills: int
) -> None:
    server.start()
    await server.ready()
    headers = {"Authorization": f"Bearer {server.key()}"}
    pending: asyncio.Queue[str] = asyncio.Queue()
    for number in range(100_000):
        pending.put_nowait(f"m-{number}")
    acknowledged: dict[str, int] = {}
    interrupted = 0
    sending = True
    window_open = True

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=server.base, timeout=5) as http:
            while window_open:
                try:
                    message_id = pending.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if not sending and not message_id.startswith("retry:"):
                    return
                original = message_id.removeprefix("retry:")
                body = {
                    "event": "crash-test",
                    "contact": {"email": f"c{index}@example.com"},
                    "message_id": original,
                }
                try:
                    response = await http.post("/v1/track", headers=headers, json=body)
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code in (200, 201):
                    event_id = response.json()["id"]
                    assert acknowledged.setdefault(original, event_id) == event_id
                else:
                    # not acknowledged: send it again once the server is back
                    nonlocal interrupted
                    interrupted += 1
                    pending.put_nowait(f"retry:{original}")
                    await asyncio.sleep(0.05)

    rng = random.Random(kills)
    for _ in range(kills):
        window_open = True
        clients = [asyncio.create_task(client(index)) for index in range(CLIENTS)]
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        server.kill()
        window_open = False  # each client ends after the request the kill cut off
        await asyncio.gather(*clients)
        server.start()
        await server.ready()
    window_open = True
    sending = False
    retries = [item for item in _drain(pending) if item.startswith("retry:")]
    for item in retries:
        pending.put_nowait(item)
    await asyncio.gather(*(client(index) for index in range(CLIENTS)))
    server.kill()

    assert len(acknowledged) > kills  # the clients got through between the kills
    assert interrupted > 0  # and some requests were cut off by a kill
    db = Database(server.url)
    try:
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(events.c.message_id, sa.func.count())
                    .where(events.c.name == "crash-test")
                    .group_by(events.c.message_id)
                )
            ).all()
            keys = await conn.scalar(sa.select(sa.func.count()).select_from(event_message_ids))
    finally:
        await db.dispose()
    stored = dict(rows)
    assert [m for m, count in stored.items() if count > 1] == []  # nothing twice
    assert set(acknowledged) <= set(stored)  # nothing acknowledged lost
    assert keys == len(stored)


def _drain(queue: asyncio.Queue[str]) -> list[str]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
