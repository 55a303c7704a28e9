"""Query benchmark on a seeded database (bench/seed.py): the contact timeline and two
segment counts through the service layer, each count against hand-written SQL.

    python bench/queries.py sqlite+aiosqlite:////tmp/bench_q.db
    python bench/queries.py postgresql+asyncpg://postgres@127.0.0.1:5432/bench_q \
        --index "CREATE INDEX bench_ix ON events (account_id, name, contact_id, occurred_at)"

`--index` DDL (repeatable) is run before measuring and its indexes dropped after, so a
candidate index can be tried without a migration. Prints p50/p99 of each, the ratios
(targets: timeline p99 <= 5 ms; segment counts <= 1.5x the hand-written SQL) and the
plan of every statement exactly as the service sent it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.db.engine import Database
from trackbook.db.tables import accounts, contacts, event_names
from trackbook.db.types import UTCDateTime
from trackbook.events.queries import timeline
from trackbook.segments.service import count_members

TIMELINE_P99_MS = 5.0
COUNT_RATIO = 1.5
PURCHASES = {
    "event": {
        "name": "purchase",
        "count": {"op": ">=", "value": 3},
        "within": {"last": 30, "unit": "days"},
    }
}
PRO_PLAN = {"property": {"event": "purchase", "path": "plan", "op": "equals", "value": "pro"}}
HAND_PURCHASES = """
SELECT count(*) FROM (
    SELECT contact_id FROM events
    WHERE account_id = :account AND name = 'purchase' AND occurred_at >= :since
    GROUP BY contact_id HAVING count(*) >= 3
) AS buyers"""
# The shape a compiler could emit instead of a per-contact correlated subquery: one
# pass over the events of the name, contacts matched by id (shown for information).
SEMI_PURCHASES = """
SELECT count(*) FROM contacts
WHERE account_id = :account AND id IN (
    SELECT contact_id FROM events
    WHERE account_id = :account AND name = 'purchase' AND occurred_at >= :since
    GROUP BY contact_id HAVING count(*) >= 3)"""
SEMI_PRO_PLAN = {
    "sqlite": """
SELECT count(*) FROM contacts
WHERE account_id = :account AND id IN (
    SELECT contact_id FROM events
    WHERE account_id = :account AND name = 'purchase'
      AND json_extract(properties, '$.plan') = 'pro')""",
    "postgresql": """
SELECT count(*) FROM contacts
WHERE account_id = :account AND id IN (
    SELECT contact_id FROM events
    WHERE account_id = :account AND name = 'purchase' AND properties ->> 'plan' = 'pro')""",
}
HAND_PRO_PLAN = {
    "sqlite": """
SELECT count(DISTINCT contact_id) FROM events
WHERE account_id = :account AND name = 'purchase'
  AND json_extract(properties, '$.plan') = 'pro'""",
    "postgresql": """
SELECT count(DISTINCT contact_id) FROM events
WHERE account_id = :account AND name = 'purchase' AND properties ->> 'plan' = 'pro'""",
}


@dataclass(frozen=True, slots=True)
class Timing:
    label: str
    seconds: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def p50(self) -> float:
        return self.quantile(0.5)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)

    def line(self) -> str:
        return (
            f"{self.label:<40} n={len(self.seconds):<5} p50 {self.p50:9.2f} ms"
            f"  p99 {self.p99:9.2f} ms  mean {statistics.fmean(self.seconds) * 1000:9.2f} ms"
        )


class Capture:
    """The last statement and parameters the driver was given, to EXPLAIN it as sent."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statement = ""
        self.parameters: Any = ()
        sa_event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statement, self.parameters = statement, parameters


async def explain(conn: AsyncConnection, statement: str, parameters: Any) -> str:
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if conn.dialect.name == "sqlite":
        rows = await raw.execute_fetchall("EXPLAIN QUERY PLAN " + statement, parameters)
        return "\n".join(f"  {row[3]}" for row in rows)
    rows = await raw.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *parameters)
    return "\n".join(f"  {row[0]}" for row in rows)


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    begun = time.perf_counter()
    result = await call()
    return time.perf_counter() - begun, result


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def compare(
    label: str,
    calls: dict[str, Callable[[], Awaitable[Any]]],
    args: argparse.Namespace,
    capture: Capture,
    plans: dict[str, tuple[str, Any]],
) -> int:
    """Runs the calls in turn, repeatedly (the first round unmeasured, its statements
    kept for EXPLAIN); prints service vs hand-written; returns 1 on a miss."""
    times: dict[str, list[float]] = {kind: [] for kind in calls}
    answers = set()
    deadline = time.monotonic() + args.budget
    for repeat in range(args.repeats + 1):
        for kind, call in calls.items():
            seconds, found = await timed(call)
            answers.add((kind, found))
            if repeat == 0:
                plans[f"{label} ({kind})"] = (capture.statement, capture.parameters)
            else:
                times[kind].append(seconds)
        if repeat >= 3 and time.monotonic() > deadline:
            break
    timings = {kind: Timing(f"{label} ({kind})", seconds) for kind, seconds in times.items()}
    for timing in timings.values():
        print(timing.line())
    reference = timings["hand-written"].p50
    ratio = timings["service"].p50 / reference
    verdict = "PASS" if ratio <= COUNT_RATIO else "MISS"
    counts = ", ".join(f"{kind}={n}" for kind, n in sorted(answers))
    print(
        f"  -> {label}: service/hand p50 {ratio:.2f}x, target <= {COUNT_RATIO}x: {verdict} "
        f"(counts {counts}); semi-join form/hand "
        f"{timings['semi-join form'].p50 / reference:.2f}x"
    )
    return int(verdict == "MISS")


async def run(args: argparse.Namespace) -> int:
    database = Database(args.url)
    dialect = "sqlite" if database.is_sqlite else "postgresql"
    created: list[str] = []
    misses = 0
    try:
        async with database.read() as conn:
            account_id = args.account or await conn.scalar(sa.select(sa.func.max(accounts.c.id)))
            # "now" is the newest event, so that the windows fall where the seed put data
            now = await conn.scalar(
                sa.select(sa.func.max(event_names.c.last_seen)).where(
                    event_names.c.account_id == account_id
                )
            )
            contact_ids = list(
                await conn.scalars(
                    sa.select(contacts.c.id)
                    .where(contacts.c.account_id == account_id)
                    .order_by(contacts.c.id)
                )
            )
        for ddl in args.index:
            name = re.search(r"INDEX\s+(?:IF NOT EXISTS\s+)?(\w+)", ddl, re.IGNORECASE)
            if name is None:
                raise SystemExit(f"--index needs a named index: {ddl}")
            async with database.transaction() as conn:
                begun = time.perf_counter()
                await conn.exec_driver_sql(ddl)
                print(f"created {name[1]} in {time.perf_counter() - begun:.1f} s: {ddl}")
                created.append(name[1])
                await conn.exec_driver_sql("ANALYZE events")
        print(
            f"backend {dialect}, account {account_id}, now {now.isoformat()}, "
            f"{len(contact_ids)} contacts; load average {loadavg()}"
        )
        capture = Capture(database.reader.sync_engine)
        plans: dict[str, tuple[str, Any]] = {}
        async with database.read() as conn:
            rng = random.Random(args.seed)
            sample = [rng.choice(contact_ids) for _ in range(args.timelines + args.warmup)]
            latencies = []
            for index, contact_id in enumerate(sample):
                seconds, _page = await timed(
                    lambda c=contact_id: timeline(conn, account_id, c, limit=50)
                )
                if index >= args.warmup:
                    latencies.append(seconds)
            plans["timeline (latest 50)"] = (capture.statement, capture.parameters)
            line = Timing("timeline latest 50 (service)", latencies)
            verdict = "PASS" if line.p99 <= TIMELINE_P99_MS else "MISS"
            misses += verdict == "MISS"
            print(line.line())
            print(f"  -> timeline p99 {line.p99:.2f} ms, target <= {TIMELINE_P99_MS} ms: {verdict}")

            since = now - timedelta(days=30)
            for label, definition, hand, semi, params in (
                ("purchase >= 3 in 30 days", PURCHASES, HAND_PURCHASES, SEMI_PURCHASES,
                 {"account": account_id, "since": since}),
                ("property plan = pro", PRO_PLAN, HAND_PRO_PLAN[dialect], SEMI_PRO_PLAN[dialect],
                 {"account": account_id}),
            ):  # fmt: skip
                handwritten, semijoin = sa.text(hand), sa.text(semi)
                if "since" in params:
                    since_param = sa.bindparam("since", type_=UTCDateTime())
                    handwritten = handwritten.bindparams(since_param)
                    semijoin = semijoin.bindparams(since_param)
                misses += await compare(
                    label,
                    {
                        "service": lambda d=definition: count_members(conn, account_id, d, now=now),
                        "hand-written": lambda h=handwritten, p=params: conn.scalar(h, p),
                        "semi-join form": lambda h=semijoin, p=params: conn.scalar(h, p),
                    },
                    args,
                    capture,
                    plans,
                )
            print(f"load average after {loadavg()}")
            if args.explain:
                for label, (statement, parameters) in plans.items():
                    print(f"\n-- {label}\n{statement.strip()}\n  parameters {parameters}")
                    print(await explain(conn, statement, parameters))
    finally:
        if created:
            async with database.transaction() as conn:
                for name in created:
                    await conn.exec_driver_sql(f"DROP INDEX {name}")
            print(f"dropped {', '.join(created)}")
        await database.reader.dispose()
        await database.writer.dispose()
    return misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--account", type=int, help="default: the newest account")
    parser.add_argument("--seed", type=int, default=1, help="picks the timeline contacts")
    parser.add_argument("--timelines", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20, help="per segment count")
    parser.add_argument("--budget", type=float, default=60, help="seconds per segment count")
    parser.add_argument("--index", action="append", default=[], help="DDL to try, repeatable")
    parser.add_argument("--no-explain", dest="explain", action="store_false")
    args = parser.parse_args()
    misses = asyncio.run(run(args))
    print(f"{misses} target(s) missed" if misses else "all targets met")


if __name__ == "__main__":
    main()
