"""The same-work reference: what Trackbook stores for each event, written by hand through
the same driver, with every row prepared before the clock starts.

Per transaction: the look-up of its message ids, the events with their ids, their
message-id keys, one counter per (contact, name, title) and the name and property
catalogs, as the event writer stores a group. Its rate against a raw insert of the
events alone is the most that an ingest keeping those guarantees could reach with no
cost of its own above the database. Used by ingest.py (transactions of 1000, the
server's group of ten 100-event batches) and import.py (transactions of 2000).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

COLUMNS = (
    "account_id", "contact_id", "name", "title", "value", "properties", "source",
    "message_id", "occurred_at", "received_at",
)  # fmt: skip
"""The columns of a record, in order."""
STATISTICS_AFTER = 40
"""Transactions before PostgreSQL's statistics are first refreshed, as an import does."""


@dataclass(frozen=True, slots=True)
class SameWork:
    """One transaction's rows, aggregated as the event writer aggregates a group."""

    records: list[tuple[Any, ...]]
    """The event rows, in COLUMNS order."""
    counters: list[tuple[int, str, str, int, str | None]]
    """(contact_id, name, title, count, last value), in key order."""
    names: list[tuple[str, int, Any, Any]]
    """(name, count, first seen, last seen), in name order; times as the records hold them."""
    properties: list[tuple[str, str, Any]]
    """(event name, property name, first seen), in key order."""

    @property
    def message_ids(self) -> list[str]:
        return [record[7] for record in self.records if record[7] is not None]


def same_work(records: list[tuple[Any, ...]], size: int) -> list[SameWork]:
    """The records in transactions of `size`."""
    transactions = []
    for start in range(0, len(records), size):
        chunk = records[start : start + size]
        counters: dict[tuple[int, str, str], list[Any]] = {}
        names: dict[str, list[Any]] = {}
        properties: dict[tuple[str, str], Any] = {}
        for record in chunk:
            contact_id, name, title, value, properties_json, occurred_at = (
                record[1], record[2], record[3], record[4], record[5], record[8],
            )  # fmt: skip
            counter = counters.setdefault((contact_id, name, title or ""), [0, None])
            counter[0] += 1
            counter[1] = value
            seen = names.setdefault(name, [0, occurred_at, occurred_at])
            seen[0] += 1
            seen[1] = min(seen[1], occurred_at)
            seen[2] = max(seen[2], occurred_at)
            for property_name in orjson.loads(properties_json) or ():
                properties.setdefault((name, property_name), names[name][1])
        transactions.append(
            SameWork(
                chunk,
                [(*key, *counters[key]) for key in sorted(counters)],
                [(name, *names[name]) for name in sorted(names)],
                [(*key, properties[key]) for key in sorted(properties)],
            )
        )
    return transactions


_COUNT = (
    "ON CONFLICT (account_id, contact_id, name, title, series) DO UPDATE SET "
    "counter = event_summaries.counter + excluded.counter, "
    "last_value = excluded.last_value, updated_at = excluded.updated_at"
)
_SUMMARY_COLUMNS = (
    "account_id, contact_id, name, title, series, counter, last_value, provider, "
    "created_at, updated_at"
)
SQLITE = {
    "known": "SELECT event_id FROM event_message_ids WHERE account_id = ? AND message_id IN ({})",
    "last": "SELECT coalesce(max(id), 0) FROM events",
    "events": f"INSERT INTO events (id, {', '.join(COLUMNS)}) VALUES ({', '.join('?' * 11)})",
    "keys": "INSERT INTO event_message_ids (account_id, message_id, event_id) VALUES (?, ?, ?)",
    "counters": f"INSERT INTO event_summaries ({_SUMMARY_COLUMNS}) "
    f"VALUES (?, ?, ?, ?, 0, ?, ?, 'native', ?, ?) {_COUNT}",
    "names": "INSERT INTO event_names (account_id, name, count, first_seen, last_seen) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO UPDATE SET "
    "count = event_names.count + excluded.count, "
    "first_seen = min(event_names.first_seen, excluded.first_seen), "
    "last_seen = max(event_names.last_seen, excluded.last_seen)",
    "properties": "INSERT INTO event_properties (account_id, event_name, name, first_seen) "
    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
}
POSTGRESQL = {
    "known": "SELECT event_id FROM event_message_ids "
    "WHERE account_id = $1 AND message_id = ANY($2::text[])",
    "ids": "SELECT nextval('events_id_seq') FROM generate_series(1, $1)",
    "counters": f"INSERT INTO event_summaries ({_SUMMARY_COLUMNS}) "
    "SELECT $1, contact_id, name, title, 0, count, last_value, 'native', $7, $7 "
    "FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[]) "
    f"AS s(contact_id, name, title, count, last_value) {_COUNT}",
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


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def write_sqlite(db: sqlite3.Connection, account_id: int, work: SameWork, now: str) -> None:
    """One transaction of `work` (the records' times are SQLite text already)."""
    db.execute("BEGIN IMMEDIATE")
    message_ids = work.message_ids
    if message_ids:
        marks = ", ".join("?" * len(message_ids))
        known = db.execute(SQLITE["known"].format(marks), (account_id, *message_ids))
        if known.fetchall():
            raise RuntimeError("the same-work reference expects new message ids")
    last = db.execute(SQLITE["last"]).fetchone()[0]
    ids = range(last + 1, last + 1 + len(work.records))
    db.executemany(
        SQLITE["events"], [(i, *record) for i, record in zip(ids, work.records, strict=True)]
    )
    keys = [
        (account_id, record[7], i)
        for i, record in zip(ids, work.records, strict=True)
        if record[7] is not None
    ]
    if keys:
        db.executemany(SQLITE["keys"], keys)
    db.executemany(
        SQLITE["counters"], [(account_id, *counter, now, now) for counter in work.counters]
    )
    db.executemany(SQLITE["names"], [(account_id, *name) for name in work.names])
    db.executemany(
        SQLITE["properties"], [(account_id, *property_) for property_ in work.properties]
    )
    db.execute("COMMIT")


async def write_postgresql(
    db: asyncpg.Connection,
    account_id: int,
    work: SameWork,
    now: Any,
    *,
    number: int,
    refresh_statistics: bool,
) -> None:
    """One transaction of `work`, the `number`th on `db` (from 1)."""
    doublings, rest = divmod(number, STATISTICS_AFTER)
    if refresh_statistics and rest == 0 and doublings & (doublings - 1) == 0:
        # as an import refreshes them while it grows the tables
        await db.execute("ANALYZE contacts, events, event_message_ids, event_summaries")
    async with db.transaction():
        # the look-up planned for its values and the writes on cached plans, as the
        # event writer does (events/store.py, _planned_for_these_values)
        await db.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        message_ids = work.message_ids
        if message_ids and await db.fetch(POSTGRESQL["known"], account_id, message_ids):
            raise RuntimeError("the same-work reference expects new message ids")
        await db.execute("SET LOCAL plan_cache_mode TO DEFAULT")
        ids = [row[0] for row in await db.fetch(POSTGRESQL["ids"], len(work.records))]
        await db.copy_records_to_table(
            "events",
            records=[(i, *record) for i, record in zip(ids, work.records, strict=True)],
            columns=("id", *COLUMNS),
        )
        keys = [
            (account_id, record[7], i)
            for i, record in zip(ids, work.records, strict=True)
            if record[7] is not None
        ]
        if keys:
            await db.copy_records_to_table(
                "event_message_ids", records=keys, columns=("account_id", "message_id", "event_id")
            )
        await db.execute(POSTGRESQL["counters"], account_id, *_columns(work.counters), now)
        await db.execute(POSTGRESQL["names"], account_id, *_columns(work.names))
        if work.properties:
            await db.execute(POSTGRESQL["properties"], account_id, *_columns(work.properties))
