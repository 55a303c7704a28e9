"""Import benchmark: `trackbook import FILE --account ID` (the CLI, a subprocess) against
a raw bulk insert of the same rows through the same driver, on a fresh database each,
with the import process's RSS sampled every 0.5 s.

    python bench/import.py [--events 200000] [--backends sqlite,postgresql] [--seed 1]

The reference writes the rows into `events` in transactions of the import's batch size
(2000, the default): sqlite3 executemany on SQLite, asyncpg COPY on PostgreSQL, its
contacts inserted beforehand and not timed. Target: import rows/s >= 0.5x the reference.

A second reference, "same work", stores what an import stores for each row, written by
hand through the same driver with every row prepared before the clock starts: the
look-up of the batch's message ids, the events (with their ids), their message-id keys,
one counter per (contact, name, title) and the name and property catalogs, in one
transaction per batch. Its ratio to the raw insert is the most an import that keeps
those guarantees could reach with no cost of its own above the database.
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

from backends import trackbook_command
from seed import PLAN_WEIGHTS, PLANS, asyncpg_dsn, event_names, recreate_postgres_database

RATIO_TARGET = 0.5
BATCH = 2000
STATISTICS_AFTER = 40
"""Batches before the same-work reference refreshes the statistics, as the import does."""
SAMPLE_SECONDS = 0.5
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
COLUMNS = (
    "account_id", "contact_id", "name", "title", "value", "properties", "source",
    "message_id", "occurred_at", "received_at",
)  # fmt: skip


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


@dataclass(frozen=True, slots=True)
class SameWork:
    """One batch as an import stores it, aggregated as the writer aggregates a group."""

    records: list[tuple[Any, ...]]
    """The event rows, in COLUMNS order."""
    counters: list[tuple[int, str, str, int, str | None]]
    """(contact_id, name, title, count, last value), in key order."""
    names: list[tuple[str, int, Any, Any]]
    """(name, count, first seen, last seen), in name order; times as the records hold them."""
    properties: list[tuple[str, str, Any]]
    """(event name, property name, first seen), in key order."""


def same_work(records: list[tuple[Any, ...]]) -> list[SameWork]:
    batches = []
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        counters: dict[tuple[int, str, str], list[Any]] = {}
        names: dict[str, list[Any]] = {}
        properties: dict[tuple[str, str], datetime] = {}
        for record in batch:
            contact_id, name, title, value, properties_json, occurred_at = (
                record[1], record[2], record[3], record[4], record[5], record[8],
            )  # fmt: skip
            counter = counters.setdefault((contact_id, name, title), [0, None])
            counter[0] += 1
            counter[1] = value
            seen = names.setdefault(name, [0, occurred_at, occurred_at])
            seen[0] += 1
            seen[1] = min(seen[1], occurred_at)
            seen[2] = max(seen[2], occurred_at)
            for property_name in orjson.loads(properties_json):
                properties.setdefault((name, property_name), names[name][1])
        batches.append(
            SameWork(
                batch,
                [(*key, *counters[key]) for key in sorted(counters)],
                [(name, *names[name]) for name in sorted(names)],
                [(*key, properties[key]) for key in sorted(properties)],
            )
        )
    return batches


SQLITE_SAME_WORK = {
    "known": "SELECT event_id FROM event_message_ids WHERE account_id = ? AND message_id IN ({})",
    "events": f"INSERT INTO events (id, {', '.join(COLUMNS)}) VALUES ({', '.join('?' * 11)})",
    "keys": "INSERT INTO event_message_ids (account_id, message_id, event_id) VALUES (?, ?, ?)",
    "counters": "INSERT INTO event_summaries (account_id, contact_id, name, title, series, "
    "counter, last_value, provider, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, 0, ?, ?, 'import', ?, ?) "
    "ON CONFLICT (account_id, contact_id, name, title, series) DO UPDATE SET "
    "counter = event_summaries.counter + excluded.counter, "
    "last_value = excluded.last_value, updated_at = excluded.updated_at",
    "names": "INSERT INTO event_names (account_id, name, count, first_seen, last_seen) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO UPDATE SET "
    "count = event_names.count + excluded.count, "
    "first_seen = min(event_names.first_seen, excluded.first_seen), "
    "last_seen = max(event_names.last_seen, excluded.last_seen)",
    "properties": "INSERT INTO event_properties (account_id, event_name, name, first_seen) "
    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
}
PG_SAME_WORK = {
    "known": "SELECT event_id FROM event_message_ids "
    "WHERE account_id = $1 AND message_id = ANY($2::text[])",
    "ids": "SELECT nextval('events_id_seq') FROM generate_series(1, $1)",
    "counters": "INSERT INTO event_summaries (account_id, contact_id, name, title, series, "
    "counter, last_value, provider, created_at, updated_at) "
    "SELECT $1, contact_id, name, title, 0, count, last_value, 'import', $7, $7 "
    "FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[]) "
    "AS s(contact_id, name, title, count, last_value) "
    "ON CONFLICT (account_id, contact_id, name, title, series) DO UPDATE SET "
    "counter = event_summaries.counter + excluded.counter, "
    "last_value = excluded.last_value, updated_at = excluded.updated_at",
    "names": "INSERT INTO event_names (account_id, name, count, first_seen, last_seen) "
    "SELECT $1, name, count, first_seen, last_seen "
    "FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[]) "
    "AS n(name, count, first_seen, last_seen) "
    "ON CONFLICT (account_id, name) DO UPDATE SET count = event_names.count + excluded.count, "
    "first_seen = least(event_names.first_seen, excluded.first_seen), "
    "last_seen = greatest(event_names.last_seen, excluded.last_seen)",
    "properties": "INSERT INTO event_properties (account_id, event_name, name, first_seen) "
    "SELECT $1, event_name, name, first_seen "
    "FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS p(event_name, name, first_seen) "
    "ON CONFLICT DO NOTHING",
}
"""The statements of the same-work reference, as the import's writer would run them."""


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


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
            return _same_work_sqlite(db, account_id, same_work(records), now)
        begun = time.perf_counter()
        for start in range(0, len(records), BATCH):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(statement, records[start : start + BATCH])
            db.execute("COMMIT")
        return time.perf_counter() - begun
    finally:
        db.close()


def _same_work_sqlite(
    db: sqlite3.Connection, account_id: int, batches: list[SameWork], now: str
) -> float:
    statements = SQLITE_SAME_WORK
    begun = time.perf_counter()
    for batch in batches:
        db.execute("BEGIN IMMEDIATE")
        message_ids = [record[7] for record in batch.records]
        known = db.execute(
            statements["known"].format(", ".join("?" * len(message_ids))),
            (account_id, *message_ids),
        ).fetchall()
        assert not known  # a fresh database: every row is new
        last = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        ids = range(last + 1, last + 1 + len(batch.records))
        db.executemany(
            statements["events"],
            [(event_id, *record) for event_id, record in zip(ids, batch.records, strict=True)],
        )
        db.executemany(
            statements["keys"],
            [
                (account_id, record[7], event_id)
                for event_id, record in zip(ids, batch.records, strict=True)
            ],
        )
        db.executemany(
            statements["counters"],
            [(account_id, *counter, now, now) for counter in batch.counters],
        )
        # the times are the records' SQLite text already
        db.executemany(statements["names"], [(account_id, *name) for name in batch.names])
        db.executemany(
            statements["properties"], [(account_id, *property_) for property_ in batch.properties]
        )
        db.execute("COMMIT")
    return time.perf_counter() - begun


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
            return await _same_work_postgresql(db, account_id, same_work(records), now)
        begun = time.perf_counter()
        for start in range(0, len(records), BATCH):
            # outside a transaction block each COPY commits on its own
            await db.copy_records_to_table(
                "events", records=records[start : start + BATCH], columns=COLUMNS
            )
        return time.perf_counter() - begun
    finally:
        await db.close()


async def _same_work_postgresql(
    db: asyncpg.Connection, account_id: int, batches: list[SameWork], now: datetime
) -> float:
    statements = PG_SAME_WORK
    # as the import's writer: look-ups planned with their values, statistics refreshed
    # as the tables grow
    await db.execute("SET plan_cache_mode = force_custom_plan")
    analyze_at = STATISTICS_AFTER
    begun = time.perf_counter()
    for number, batch in enumerate(batches, start=1):
        if number == analyze_at:
            analyze_at *= 2
            await db.execute("ANALYZE contacts, events, event_message_ids, event_summaries")
        async with db.transaction():
            message_ids = [record[7] for record in batch.records]
            assert not await db.fetch(statements["known"], account_id, message_ids)
            ids = [row[0] for row in await db.fetch(statements["ids"], len(batch.records))]
            await db.copy_records_to_table(
                "events",
                records=[(i, *record) for i, record in zip(ids, batch.records, strict=True)],
                columns=("id", *COLUMNS),
            )
            await db.copy_records_to_table(
                "event_message_ids",
                records=[(account_id, m, i) for i, m in zip(ids, message_ids, strict=True)],
                columns=("account_id", "message_id", "event_id"),
            )
            await db.execute(statements["counters"], account_id, *_columns(batch.counters), now)
            await db.execute(statements["names"], account_id, *_columns(batch.names))
            if batch.properties:
                await db.execute(statements["properties"], account_id, *_columns(batch.properties))
    return time.perf_counter() - begun


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
