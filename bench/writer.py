"""The group-commit write path on its own: `write_group` in one transaction, timed per
group size, with no HTTP in front of it. Where the writer's time goes, per group and
per event, on SQLite and PostgreSQL.

    python bench/writer.py [--backends sqlite,postgresql] [--sizes 1,16,64,1000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import workload
from backends import create_postgres_database, drop_postgres_database
from trackbook.accounts import service as accounts
from trackbook.contacts.identity import ContactRef, UnknownContact
from trackbook.db.engine import Database
from trackbook.db.migrate import upgrade
from trackbook.events.model import PendingEvent, TrackCommand
from trackbook.events.store import write_group
from trackbook.keyring import Keyring, new_key


def _commands(seed: int, count: int, *, message_ids: bool) -> list[TrackCommand]:
    picker = random.Random(seed)
    commands = []
    for number, body in enumerate(workload.event_body(picker) for _ in range(count)):
        commands.append(
            TrackCommand(
                name=body["event"],
                contact=ContactRef(email=body["contact"]["email"]),
                source="native",
                unknown_contact=UnknownContact.CREATE_ALWAYS,
                title=body["title"],
                value=body["value"],
                properties=body["properties"],
                message_id=f"m-{seed}-{number}" if message_ids else None,
            )
        )
    return commands


async def _write(db: Database, account_id: int, commands: list[TrackCommand]) -> None:
    now = datetime.now(UTC)
    group = [PendingEvent(account_id, command, now, now) for command in commands]
    await db.run_transaction(write_group, group, now=now)


async def _bench(url: str, sizes: list[int], seconds: float, message_ids: bool) -> None:
    db = Database(url)
    try:
        async with db.transaction() as conn:
            account = await accounts.create_account(
                conn, "bench", now=datetime.now(UTC), keyring=Keyring([new_key()])
            )
        everyone = [
            TrackCommand(
                name="signup",
                contact=ContactRef(email=workload.email_of(contact)),
                source="native",
                unknown_contact=UnknownContact.CREATE_ALWAYS,
            )
            for contact in range(workload.CONTACTS)
        ]
        await _write(db, account.id, everyone)
        seed = 0
        for size in sizes:
            timings: list[float] = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or len(timings) < 3:
                seed += 1
                commands = _commands(seed, size, message_ids=message_ids)
                started = time.perf_counter()
                await _write(db, account.id, commands)
                timings.append(time.perf_counter() - started)
            timings = timings[1:]
            median = statistics.median(timings)
            quartiles = statistics.quantiles(timings, n=4) if len(timings) > 1 else [median] * 3
            print(
                f"  group {size:>5}: {median * 1e3:8.2f} ms per group "
                f"(IQR {quartiles[0] * 1e3:.2f}-{quartiles[2] * 1e3:.2f}), "
                f"{median / size * 1e6:7.1f} us per event, {len(timings)} groups",
                flush=True,
            )
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="1,16,64,1000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--message-ids", action="store_true", help="give every event one")
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",")]
    for backend in arguments.backends.split(","):
        print(f"{backend}:", flush=True)
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="tb-writer-") as directory:
                url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
                upgrade(url)
                asyncio.run(_bench(url, sizes, arguments.seconds, arguments.message_ids))
        else:
            database = create_postgres_database()
            try:
                upgrade(database.url)
                asyncio.run(_bench(database.url, sizes, arguments.seconds, arguments.message_ids))
            finally:
                drop_postgres_database(database)


if __name__ == "__main__":
    main()
