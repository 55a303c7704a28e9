"""The storage references: the rows /v1/batch would store, written straight into the
events table through the same driver, 100 rows per statement and transaction; and the
same-work reference (samework.py), those rows with their counters and catalogs."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import asyncpg
import orjson

import samework
from loadgen import GRACE_SECONDS, PhaseResult, percentiles, run_in_loop

COLUMNS = samework.COLUMNS
SAME_WORK_ROWS = 1000
"""Rows per same-work transaction: under load the server's group commit joins about ten
100-event batches (1000 events at most on PostgreSQL; 1300-3000 measured on SQLite)."""
SQLITE_INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
)
# SQLAlchemy's SQLite DateTime format, which the server writes: naive UTC, microseconds.
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True, slots=True)
class RawSpec:
    backend: str
    """sqlite or postgresql"""
    location: str
    """The database file (SQLite) or an asyncpg DSN (PostgreSQL)."""
    batches: list[list[dict[str, Any]]]
    seconds: float
    same_work: bool = False
    """Store what the server stores (samework.py), not the events alone."""


def _rows(
    spec: RawSpec, account_id: int, contact_ids: dict[str, int], moment: datetime | str
) -> list[list[tuple[Any, ...]]]:
    """Each batch as the server stores it: JSON text for properties, source native."""
    return [
        [
            (
                account_id,
                contact_ids[body["contact"]["email"]],
                body["event"],
                body["title"],
                body["value"],
                orjson.dumps(body["properties"]).decode(),
                "native",
                None,
                moment,
                moment,
            )
            for body in batch
        ]
        for batch in spec.batches
    ]


def _result(
    spec: RawSpec, latencies: list[float], elapsed: float, cpu: float, batch_size: int
) -> PhaseResult:
    p50, p99 = percentiles(latencies)
    return PhaseResult(
        phase="same work" if spec.same_work else "raw insert",
        requests=len(latencies),
        events=len(latencies) * batch_size,
        errors=0,
        seconds=elapsed,
        p50_ms=p50,
        p99_ms=p99,
        client_cpu_seconds=cpu,
    )


def _transactions(batches: list[list[tuple[Any, ...]]]) -> list[samework.SameWork]:
    rows = [row for batch in batches for row in batch]
    return samework.same_work(rows, SAME_WORK_ROWS)


def _sqlite_same_work(spec: RawSpec) -> PhaseResult:
    # sqlite3 itself: the server's event writer runs its groups on it, in a thread
    db = sqlite3.connect(spec.location, isolation_level=None)
    try:
        for pragma in ("synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            db.execute(f"PRAGMA {pragma}")
        found = db.execute("SELECT account_id, id, email FROM contacts").fetchall()
        account_id = found[0][0]
        contact_ids = {email: contact_id for _, contact_id, email in found}
        moment = datetime.now(UTC).strftime(SQLITE_TIME)
        transactions = _transactions(_rows(spec, account_id, contact_ids, moment))
        latencies: list[float] = []
        cpu_before = time.process_time()
        started = time.perf_counter()
        deadline = started + spec.seconds
        while time.perf_counter() < deadline:
            begun = time.perf_counter()
            work = transactions[len(latencies) % len(transactions)]
            samework.write_sqlite(db, account_id, work, moment)
            latencies.append(time.perf_counter() - begun)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        return _result(spec, latencies, elapsed, cpu, SAME_WORK_ROWS)
    finally:
        db.close()


async def _sqlite(spec: RawSpec) -> PhaseResult:
    async with aiosqlite.connect(spec.location, isolation_level=None) as db:
        # The server's pragmas, so that the comparison is about the code above them.
        for pragma in ("synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            await db.execute(f"PRAGMA {pragma}")
        found = await db.execute_fetchall("SELECT account_id, id, email FROM contacts")
        account_id = next(iter(found))[0]
        contact_ids = {email: contact_id for _, contact_id, email in found}
        moment = datetime.now(UTC).strftime(SQLITE_TIME)
        batches = _rows(spec, account_id, contact_ids, moment)
        latencies: list[float] = []
        cpu_before = time.process_time()
        started = time.perf_counter()
        deadline = started + spec.seconds
        while time.perf_counter() < deadline:
            rows = batches[len(latencies) % len(batches)]
            begun = time.perf_counter()
            await db.execute("BEGIN IMMEDIATE")
            await db.executemany(SQLITE_INSERT, rows)
            await db.execute("COMMIT")
            latencies.append(time.perf_counter() - begun)
        elapsed = time.perf_counter() - started
        size = SAME_WORK_ROWS if spec.same_work else len(batches[0])
        return _result(spec, latencies, elapsed, time.process_time() - cpu_before, size)


async def _postgresql(spec: RawSpec) -> PhaseResult:
    connection = await asyncpg.connect(spec.location, timeout=GRACE_SECONDS)
    try:
        found = await connection.fetch("SELECT account_id, id, email FROM contacts")
        account_id = found[0]["account_id"]
        contact_ids = {row["email"]: row["id"] for row in found}
        batches = _rows(spec, account_id, contact_ids, datetime.now(UTC))
        transactions = _transactions(batches) if spec.same_work else []
        moment = batches[0][0][8]
        latencies: list[float] = []
        cpu_before = time.process_time()
        started = time.perf_counter()
        deadline = started + spec.seconds
        while time.perf_counter() < deadline:
            rows = batches[len(latencies) % len(batches)]
            begun = time.perf_counter()
            if spec.same_work:
                work = transactions[len(latencies) % len(transactions)]
                number = len(latencies) + 1
                await samework.write_postgresql(
                    connection, account_id, work, moment, number=number, refresh_statistics=False
                )
            else:
                # Outside a transaction block each COPY commits on its own: one per 100 rows.
                await connection.copy_records_to_table("events", records=rows, columns=COLUMNS)
            latencies.append(time.perf_counter() - begun)
        elapsed = time.perf_counter() - started
        size = SAME_WORK_ROWS if spec.same_work else len(batches[0])
        return _result(spec, latencies, elapsed, time.process_time() - cpu_before, size)
    finally:
        await connection.close()


def run_raw_insert(spec: RawSpec) -> PhaseResult:
    """Inserts for `spec.seconds` on one connection; the process pool entry."""
    if spec.backend == "sqlite":
        if spec.same_work:
            return _sqlite_same_work(spec)
        return run_in_loop(lambda: _sqlite(spec))
    return run_in_loop(lambda: _postgresql(spec))
