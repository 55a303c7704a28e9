"""Monthly partitions of `events` on PostgreSQL (SQLite keeps one table).

`events` is partitioned by range of `occurred_at`, one partition a month, and a default
partition catches anything no month partition covers (backfills older than the first
month), so an insert never fails for want of a partition. `ensure_partitions` creates
the months from `BEHIND` months ago to `AHEAD` months ahead; it runs at migration, at
start-up and hourly in the worker, under an advisory lock so processes do not race.
A month created after rows for it landed in the default partition takes them along.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import sqlalchemy as sa

AHEAD = 3
BEHIND = 12
"""Months kept ready before now, for backfills and imports of the past year."""
DEFAULT = "events_default"
MONTHLY = re.compile(r"^events_y\d{4}m\d{2}$")
_LOCK = 7_123_402_611  # any constant: the advisory lock key of partition maintenance


def is_partition(name: str) -> bool:
    return name == DEFAULT or MONTHLY.match(name) is not None


def _month(moment: date) -> date:
    return date(moment.year, moment.month, 1)


def _next(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _previous(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def _name(month: date) -> str:
    return f"events_y{month.year}m{month.month:02d}"


def _moment(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def _bound(month: date) -> str:
    return f"{month.isoformat()} 00:00:00+00"


def ensure_partitions(
    connection: sa.Connection, now: datetime, *, since: date | None = None
) -> int:
    """Creates the missing month partitions from `since` (default: BEHIND months ago) to AHEAD
    months after `now`; returns how many were created. A no-op off PostgreSQL."""
    if connection.dialect.name != "postgresql":
        return 0
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    existing = set(
        connection.scalars(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
            )
        )
    )
    current = _month(now.astimezone(UTC).date())
    month = _month(since) if since is not None else current
    if since is None:
        for _ in range(BEHIND):
            month = _previous(month)
    last = current
    for _ in range(AHEAD):
        last = _next(last)
    created = 0
    while month <= last:
        name = _name(month)
        if name not in existing:
            start, end = _bound(month), _bound(_next(month))
            # built beside the table, filled from the default partition, then attached:
            # attaching a range the default partition still holds rows of would fail
            # names and bounds are built here from dates, never from input
            connection.execute(
                sa.text(
                    f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                )
            )
            if DEFAULT in existing:
                connection.execute(
                    sa.text(
                        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE occurred_at >= :start"
                        " AND occurred_at < :end RETURNING *)"
                        f" INSERT INTO {name} SELECT * FROM moved"
                    ),
                    {"start": _moment(month), "end": _moment(_next(month))},
                )
            connection.execute(
                sa.text(
                    f"ALTER TABLE events ATTACH PARTITION {name} "
                    f"FOR VALUES FROM ('{start}') TO ('{end}')"
                )
            )
            created += 1
        month = _next(month)
    return created
