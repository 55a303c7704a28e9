"""A reproducible query data set: 1,000,000 events over 100,000 contacts and 50 event
names, bulk-written into a fresh, migrated database for one new account.

    python bench/seed.py sqlite+aiosqlite:////tmp/bench.db [--seed 1]
    python bench/seed.py postgresql+asyncpg://postgres@127.0.0.1:5432/bench_q [--seed 1]

A PostgreSQL database must be named bench_*; it is dropped and created again. Rows go
straight into contacts, events, event_summaries, event_names and event_properties
(sqlite3 executemany in one transaction; asyncpg COPY), with the counters the ingest
path would have kept. Prints the account id on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import sqlite3
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa

from trackbook.accounts import service as accounts
from trackbook.db.engine import Database
from trackbook.db.migrate import upgrade
from trackbook.keyring import Keyring
from trackbook.settings import Settings

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
"""SQLAlchemy's SQLite DateTime format, which the server writes: naive UTC."""
YEAR = timedelta(days=365)
PLANS = ("free", "basic", "pro", "enterprise")
PLAN_WEIGHTS = (50, 25, 18, 7)
OTHER_NAMES = (
    "page_view", "session_start", "product_view", "add_to_cart", "email_open",
    "email_click", "search", "login", "logout", "signup", "checkout_start", "wishlist_add",
    "review", "coupon_applied", "refund", "subscription_renewed", "subscription_cancelled",
    "support_ticket", "chat_started", "download", "video_play", "video_complete", "share",
    "invite_sent", "invite_accepted", "profile_updated", "password_reset", "trial_started",
    "trial_converted", "webinar_registered", "webinar_attended", "form_submit",
    "cart_abandoned", "order_shipped", "order_delivered", "return_requested", "nps_response",
    "survey_completed", "app_install", "app_open", "push_open", "sms_click", "feature_used",
    "export_data", "import_data", "api_call", "plan_viewed", "upgrade_clicked", "badge_earned",
)  # fmt: skip
EVENT_COLUMNS = (
    "account_id", "contact_id", "name", "title", "value", "properties", "source",
    "occurred_at", "received_at",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "account_id", "contact_id", "name", "title", "counter", "last_value", "provider",
    "created_at", "updated_at", "series",
)  # fmt: skip
CONTACT_COLUMNS = ("account_id", "email", "status", "created_at", "updated_at")


@dataclass
class DataSet:
    """Everything the seed writes, contacts by index (their email is user<index>)."""

    now: datetime
    contacts: int
    events: list[tuple[int, str, str | None, str | None, str, datetime]] = field(
        default_factory=list
    )
    """(contact index, name, title, value, properties JSON, occurred_at), oldest first."""


def event_names(count: int) -> list[str]:
    """`count` names, `purchase` third: by rank, the frequency falls as 1/rank."""
    names = list(OTHER_NAMES[: count - 1])
    names.insert(min(2, len(names)), "purchase")
    return names


def _properties(rng: random.Random, name: str, contact: int) -> tuple[str | None, str]:
    """The event's value and its properties as JSON text."""
    plan = rng.choices(PLANS, PLAN_WEIGHTS)[0]
    if name == "purchase":
        amount = round(rng.uniform(5, 500), 2)
        sku = f"SKU-{rng.randrange(1000):04d}"
        body: dict[str, Any] = {
            "plan": plan,
            "amount": amount,
            "currency": "EUR",
            "items": {"sku": sku, "qty": rng.randint(1, 5)},
        }
        return f"{amount:.2f}", orjson.dumps(body).decode()
    if name in ("page_view", "product_view"):
        body = {"plan": plan, "path": f"/p/{rng.randrange(5000)}"}
        return None, orjson.dumps(body).decode()
    body = {"plan": plan, "n": contact % 7}
    return None, orjson.dumps(body).decode()


def generate(seed: int, *, events: int, contacts: int, names: int, now: datetime) -> DataSet:
    """Contacts are skewed (weight 1/rank^0.7 over a shuffled order), names by 1/rank,
    times uniform over the 12 months before `now`."""
    rng = random.Random(seed)
    order = list(range(contacts))
    rng.shuffle(order)
    contact_weights = list(itertools.accumulate(1 / (rank + 1) ** 0.7 for rank in order))
    all_names = event_names(names)
    name_weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(all_names))))
    titles = {name: name.replace("_", " ").capitalize() for name in all_names}
    titles["purchase"] = "Order"
    start = now - YEAR
    span = int(YEAR.total_seconds() * 1_000_000)
    total_c, total_n = contact_weights[-1], name_weights[-1]
    data = DataSet(now=now, contacts=contacts)
    offsets = sorted(rng.randrange(span) for _ in range(events))
    for offset in offsets:
        contact = bisect.bisect(contact_weights, rng.random() * total_c)
        name = all_names[bisect.bisect(name_weights, rng.random() * total_n)]
        value, properties = _properties(rng, name, contact)
        occurred_at = start + timedelta(microseconds=offset)
        data.events.append((contact, name, titles[name], value, properties, occurred_at))
    return data


@dataclass
class Derived:
    """The counters the ingest path keeps beside the events."""

    summaries: list[tuple[int, str, str, int, str | None, datetime, datetime]]
    names: list[tuple[str, int, datetime, datetime]]
    properties: list[tuple[str, str, datetime]]


def derive(data: DataSet) -> Derived:
    summaries: dict[tuple[int, str, str], list[Any]] = {}
    names: dict[str, list[Any]] = {}
    properties: dict[tuple[str, str], datetime] = {}
    keys_of: dict[str, list[str]] = defaultdict(list)
    for contact, name, title, value, body, occurred_at in data.events:
        key = (contact, name, title or "")
        found = summaries.get(key)
        if found is None:
            summaries[key] = [1, value, occurred_at, occurred_at]
        else:
            found[0] += 1
            found[1] = value
            found[3] = occurred_at
        seen = names.get(name)
        if seen is None:
            names[name] = [1, occurred_at, occurred_at]
            keys_of[name] = list(orjson.loads(body))
            for property_name in keys_of[name]:
                properties[name, property_name] = occurred_at
        else:
            seen[0] += 1
            seen[2] = occurred_at
    return Derived(
        summaries=[(c, n, t, *rest) for (c, n, t), rest in sorted(summaries.items())],
        names=[(name, *rest) for name, rest in sorted(names.items())],
        properties=[(n, p, at) for (n, p), at in sorted(properties.items())],
    )


async def create_account(url: str, now: datetime, *, partitions: bool) -> int:
    """The account, and on PostgreSQL the month partitions of the 12 months: a migration
    run on a database that already held them would create these (since the oldest event);
    without them every month before last lands in the default partition."""
    database = Database(url)
    try:
        async with database.transaction() as conn:
            # the key a server started here (TRACKBOOK_SECRET_KEY or ./trackbook.key) uses
            keyring = Keyring.from_settings(Settings(database_url=url))
            account = await accounts.create_account(conn, "Bench", now=now, keyring=keyring)
            if partitions and not database.is_sqlite:
                from trackbook.db.partitions import ensure_partitions  # noqa: PLC0415

                since = (now - YEAR).date()
                await conn.run_sync(lambda sync: ensure_partitions(sync, now, since=since))
    finally:
        await database.reader.dispose()
        await database.writer.dispose()
    return account.id


def _sqlite_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(SQLITE_TIME)


def write_sqlite(path: str, account_id: int, data: DataSet, derived: Derived) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN IMMEDIATE")
        created = _sqlite_time(data.now - YEAR - timedelta(days=1))
        db.executemany(
            f"INSERT INTO contacts ({', '.join(CONTACT_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
            (
                (account_id, f"user{index:06d}@example.com", "subscribed", created, created)
                for index in range(data.contacts)
            ),
        )
        ids = [
            row[0]
            for row in db.execute(
                "SELECT id FROM contacts WHERE account_id = ? ORDER BY id", (account_id,)
            )
        ]
        marks = ", ".join("?" for _ in EVENT_COLUMNS)
        db.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({marks})",
            (
                (account_id, ids[c], n, t, v, p, "native", at := _sqlite_time(o), at)
                for c, n, t, v, p, o in data.events
            ),
        )
        marks = ", ".join("?" for _ in SUMMARY_COLUMNS)
        db.executemany(
            f"INSERT INTO event_summaries ({', '.join(SUMMARY_COLUMNS)}) VALUES ({marks})",
            (
                (account_id, ids[c], n, t, k, v, "native", _sqlite_time(f), _sqlite_time(u), 0)
                for c, n, t, k, v, f, u in derived.summaries
            ),
        )
        db.executemany(
            "INSERT INTO event_names (account_id, name, count, first_seen, last_seen, "
            "whitelisted) VALUES (?, ?, ?, ?, ?, 0)",
            ((account_id, n, k, _sqlite_time(f), _sqlite_time(u)) for n, k, f, u in derived.names),
        )
        db.executemany(
            "INSERT INTO event_properties (account_id, event_name, name, first_seen) "
            "VALUES (?, ?, ?, ?)",
            ((account_id, e, n, _sqlite_time(f)) for e, n, f in derived.properties),
        )
        db.execute("COMMIT")
        db.execute("ANALYZE")
    finally:
        db.close()


async def write_postgresql(dsn: str, account_id: int, data: DataSet, derived: Derived) -> None:
    db = await asyncpg.connect(dsn)
    try:
        created = data.now - YEAR - timedelta(days=1)
        async with db.transaction():
            await db.copy_records_to_table(
                "contacts",
                records=[
                    (account_id, f"user{index:06d}@example.com", "subscribed", created, created)
                    for index in range(data.contacts)
                ],
                columns=CONTACT_COLUMNS,
            )
            ids = [
                row[0]
                for row in await db.fetch(
                    "SELECT id FROM contacts WHERE account_id = $1 ORDER BY id", account_id
                )
            ]
            await db.copy_records_to_table(
                "events",
                records=(
                    (account_id, ids[c], n, t, v, p, "native", o, o)
                    for c, n, t, v, p, o in data.events
                ),
                columns=EVENT_COLUMNS,
            )
            await db.copy_records_to_table(
                "event_summaries",
                records=(
                    (account_id, ids[c], n, t, k, v, "native", f, u, 0)
                    for c, n, t, k, v, f, u in derived.summaries
                ),
                columns=SUMMARY_COLUMNS,
            )
            await db.copy_records_to_table(
                "event_names",
                records=((account_id, n, k, f, u, False) for n, k, f, u in derived.names),
                columns=("account_id", "name", "count", "first_seen", "last_seen", "whitelisted"),
            )
            await db.copy_records_to_table(
                "event_properties",
                records=((account_id, e, n, f) for e, n, f in derived.properties),
                columns=("account_id", "event_name", "name", "first_seen"),
            )
        await db.execute("VACUUM ANALYZE")
    finally:
        await db.close()


async def recreate_postgres_database(url: sa.URL) -> None:
    name = url.database or ""
    if not name.startswith("bench_"):
        raise SystemExit(f"refusing to recreate {name!r}: only bench_* databases")
    admin = await asyncpg.connect(
        user=url.username, host=url.host, port=url.port or 5432, database="postgres"
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def asyncpg_dsn(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="sqlite+aiosqlite:///FILE or postgresql+asyncpg://…/bench_*")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--names", type=int, default=50)
    parser.add_argument(
        "--now",
        type=datetime.fromisoformat,
        default=datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0),
        help="The end of the 12 months (ISO 8601, UTC); default today 00:00 UTC.",
    )
    parser.add_argument(
        "--no-partitions",
        dest="partitions",
        action="store_false",
        help="PostgreSQL: leave the months the migration did not create to the default partition.",
    )
    args = parser.parse_args()
    url = sa.make_url(args.url)
    now = args.now if args.now.tzinfo else args.now.replace(tzinfo=UTC)
    begun = time.perf_counter()
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
    else:
        asyncio.run(recreate_postgres_database(url))
    upgrade(args.url)
    account_id = asyncio.run(create_account(args.url, now, partitions=args.partitions))
    data = generate(
        args.seed, events=args.events, contacts=args.contacts, names=args.names, now=now
    )
    derived = derive(data)
    generated = time.perf_counter()
    print(
        f"generated {len(data.events)} events, {len(derived.summaries)} summaries "
        f"in {generated - begun:.1f} s",
        file=sys.stderr,
    )
    if url.get_backend_name() == "sqlite":
        write_sqlite(url.database or "", account_id, data, derived)
    else:
        asyncio.run(write_postgresql(asyncpg_dsn(url), account_id, data, derived))
    print(
        f"written in {time.perf_counter() - generated:.1f} s (now={now.isoformat()})",
        file=sys.stderr,
    )
    print(account_id)


if __name__ == "__main__":
    main()
