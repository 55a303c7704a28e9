"""Import benchmark: `trackbook import FILE --account ID` (the CLI, a subprocess) against
a raw bulk insert of the same rows through the same driver, on a fresh database each,
with the import process's RSS sampled every 0.5 s.

    python bench/import.py [--events 200000] [--backends sqlite,postgresql] [--seed 1]

The reference writes the rows into `events` in transactions of the import's batch size
(2000, the default): sqlite3 executemany on SQLite, asyncpg COPY on PostgreSQL, its
contacts inserted beforehand and not timed. Target: import rows/s >= 0.5x the reference.

A second reference, "same work" (samework.py), stores by hand what an import stores for
each row, in the same transactions, with every row prepared before the clock starts:
its ratio to the raw insert is the most an import keeping those guarantees could reach.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa

import samework
from backends import trackbook_command
from seed import PLAN_WEIGHTS, PLANS, asyncpg_dsn, event_names, recreate_postgres_database

RATIO_TARGET = 0.5
BATCH = 2000
SAMPLE_SECONDS = 0.5
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
COLUMNS = samework.COLUMNS


@dataclass(frozen=True, slots=True)
class Row:
    email: str
    name: str
    title: str
    value: str | None
    properties: dict[str, Any]
    occurred_at: datetime


def generate(count: int, contacts: int, seed: int, now: datetime) -> list[Row]:
    """Events of the last 20 days (inside the month partitions the migration creates)."""
    rng = random.Random(seed)
    names = event_names(50)
    weights = [1 / (rank + 1) for rank in range(len(names))]
    rows = []
    span = int(timedelta(days=20).total_seconds())
    for _ in range(count):
        name = rng.choices(names, weights)[0]
        properties: dict[str, Any] = {"plan": rng.choices(PLANS, PLAN_WEIGHTS)[0]}
        value = None
        if name == "purchase":
            amount = round(rng.uniform(5, 500), 2)
            properties |= {"amount": amount, "items": {"sku": f"SKU-{rng.randrange(1000):04d}"}}
            value = f"{amount:.2f}"
        rows.append(
            Row(
                email=f"user{rng.randrange(contacts):06d}@example.com",
                name=name,
                title=name.replace("_", " ").capitalize(),
                value=value,
                properties=properties,
                occurred_at=now - timedelta(seconds=rng.randrange(span), microseconds=1),
            )
        )
    return rows


def write_ndjson(rows: list[Row], path: Path) -> None:
    with path.open("wb") as out:
        for row in rows:
            body = {
                "event": row.name,
                "contact": {"email": row.email},
                "title": row.title,
                "value": row.value,
                "properties": row.properties,
                "timestamp": row.occurred_at.isoformat(),
            }
            out.write(orjson.dumps(body) + b"\n")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass(frozen=True, slots=True)
class ImportRun:
    seconds: float
    rss_kib: list[int]
    output: str


def run_import(url: str, account_id: int, path: Path) -> ImportRun:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACKBOOK_")}
    environment |= {"TRACKBOOK_DATABASE_URL": url, "TRACKBOOK_LOG_LEVEL": "warning"}
    samples: list[int] = []
    with tempfile.TemporaryFile("w+") as log:
        begun = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - our own console script, no shell
            [
                *trackbook_command(),
                *("import", str(path), "--account", str(account_id), "--batch", str(BATCH)),
            ],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        while process.poll() is None:
            found = rss_kib(process.pid)
            if found is not None:
                samples.append(found)
            time.sleep(SAMPLE_SECONDS)
        seconds = time.perf_counter() - begun
        log.seek(0)
        output = log.read()
    if process.returncode != 0:
        raise SystemExit(f"trackbook import exited {process.returncode}:\n{output[-2000:]}")
    return ImportRun(seconds, samples, output.strip().splitlines()[-1] if output else "")


async def create_account(url: str) -> int:
    from seed import create_account as seed_account  # noqa: PLC0415

    return await seed_account(url, datetime.now(UTC), partitions=False)


def message_id(line: int) -> str:
    return "import:" + hashlib.sha256(b"%d" % line).hexdigest()[:40]


def raw_sqlite(path: str, account_id: int, rows: list[Row], *, full: bool = False) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            db.execute(f"PRAGMA {pragma}")
        now = datetime.now(UTC).strftime(SQLITE_TIME)
        emails = sorted({row.email for row in rows})
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO contacts (account_id, email, status, created_at, updated_at) "
            "VALUES (?, ?, 'subscribed', ?, ?)",
            [(account_id, email, now, now) for email in emails],
        )
        db.execute("COMMIT")
        ids = dict(db.execute("SELECT email, id FROM contacts WHERE account_id = ?", (account_id,)))
        records = [
            (
                account_id,
                ids[row.email],
                row.name,
                row.title,
                row.value,
                orjson.dumps(row.properties).decode(),
                "import",
                message_id(line),
                row.occurred_at.astimezone(UTC).strftime(SQLITE_TIME),
                now,
            )
            for line, row in enumerate(rows, start=1)
        ]
        statement = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 10)})"
        if full:
            begun = time.perf_counter()
            for work in samework.same_work(records, BATCH):
                samework.write_sqlite(db, account_id, work, now)
            return time.perf_counter() - begun
        begun = time.perf_counter()
        for start in range(0, len(records), BATCH):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(statement, records[start : start + BATCH])
            db.execute("COMMIT")
        return time.perf_counter() - begun
    finally:
        db.close()


async def raw_postgresql(
    dsn: str, account_id: int, rows: list[Row], *, full: bool = False
) -> float:
    db = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        emails = sorted({row.email for row in rows})
        await db.copy_records_to_table(
            "contacts",
            records=[(account_id, email, "subscribed", now, now) for email in emails],
            columns=("account_id", "email", "status", "created_at", "updated_at"),
        )
        ids = dict(
            await db.fetch("SELECT email, id FROM contacts WHERE account_id = $1", account_id)
        )
        records = [
            (
                account_id,
                ids[row.email],
                row.name,
                row.title,
                row.value,
                orjson.dumps(row.properties).decode(),
                "import",
                message_id(line),
                row.occurred_at,
                now,
            )
            for line, row in enumerate(rows, start=1)
        ]
        if full:
            transactions = samework.same_work(records, BATCH)
            begun = time.perf_counter()
            for number, work in enumerate(transactions, start=1):
                await samework.write_postgresql(
                    db, account_id, work, now, number=number, refresh_statistics=True
                )
            return time.perf_counter() - begun
        begun = time.perf_counter()
        for start in range(0, len(records), BATCH):
            # outside a transaction block each COPY commits on its own
            await db.copy_records_to_table(
                "events", records=records[start : start + BATCH], columns=COLUMNS
            )
        return time.perf_counter() - begun
    finally:
        await db.close()


def reference_seconds(backend: str, url: str, rows: list[Row], *, full: bool) -> float:
    """The raw insert (`full`: the same-work reference) into a database of its own."""
    account_id = asyncio.run(create_account(url))
    if backend == "sqlite":
        return raw_sqlite(sa.make_url(url).database or "", account_id, rows, full=full)
    return asyncio.run(raw_postgresql(asyncpg_dsn(sa.make_url(url)), account_id, rows, full=full))


def fresh_database(backend: str, directory: Path, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{directory / name}.db"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/bench_{name}"
    asyncio.run(recreate_postgres_database(sa.make_url(url)))
    return url


def drop_database(url: str) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return

    async def drop() -> None:
        admin = await asyncpg.connect(
            user=parsed.username, host=parsed.host, port=parsed.port, database="postgres"
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bench_backend(backend: str, rows: list[Row], path: Path, directory: Path) -> bool:
    from trackbook.db.migrate import upgrade  # noqa: PLC0415

    print(f"\n{backend}: load average {loadavg()}")
    imported_url = fresh_database(backend, directory, "import_cli")
    raw_url = fresh_database(backend, directory, "import_raw")
    same_url = fresh_database(backend, directory, "import_same")
    try:
        for url in (imported_url, raw_url, same_url):
            upgrade(url)
        account_id = asyncio.run(create_account(imported_url))
        run = run_import(imported_url, account_id, path)
        raw_seconds = reference_seconds(backend, raw_url, rows, full=False)
        same_seconds = reference_seconds(backend, same_url, rows, full=True)
    finally:
        for url in (imported_url, raw_url, same_url):
            drop_database(url)
    import_rate = len(rows) / run.seconds
    raw_rate = len(rows) / raw_seconds
    same_rate = len(rows) / same_seconds
    ratio = import_rate / raw_rate
    verdict = "PASS" if ratio >= RATIO_TARGET else "MISS"
    mib = [kib / 1024 for kib in run.rss_kib] or [0.0]
    print(f"  import CLI : {import_rate:9.0f} rows/s ({run.seconds:.1f} s, process start included)")
    print(f"  raw insert : {raw_rate:9.0f} rows/s ({raw_seconds:.1f} s, batches of {BATCH})")
    print(f"  same work  : {same_rate:9.0f} rows/s ({same_seconds:.1f} s, by hand, rows prepared)")
    print(f"  -> import/raw {ratio:.2f}x, target >= {RATIO_TARGET}x: {verdict}")
    print(
        f"  -> same work/raw {same_rate / raw_rate:.2f}x (the most an import could reach), "
        f"import/same work {import_rate / same_rate:.2f}x"
    )
    quarter = len(mib) // 4
    print(
        f"  import RSS MiB: start {mib[0]:.0f}, peak {max(mib):.0f}, end {mib[-1]:.0f}, "
        f"median of the last three quarters {sorted(mib[quarter:])[len(mib[quarter:]) // 2]:.0f}"
        f" ({len(mib)} samples every {SAMPLE_SECONDS} s)"
    )
    print(f"  import said: {run.output}")
    print(f"  load average after {loadavg()}")
    return verdict == "PASS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tb-import-") as name:
        directory = Path(name)
        rows = generate(args.events, args.contacts, args.seed, datetime.now(UTC))
        path = directory / "events.ndjson"
        write_ndjson(rows, path)
        print(f"{len(rows)} events over {args.contacts} contacts, {path.stat().st_size} bytes")
        passed = [
            bench_backend(backend, rows, path, directory) for backend in args.backends.split(",")
        ]
    print("all targets met" if all(passed) else "target missed")


if __name__ == "__main__":
    main()
