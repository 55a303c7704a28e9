"""Writing a group of events in one transaction: the SQL behind track().

The group runs as synchronous SQLAlchemy work (`Database.run_transaction`). Each table
is written with one statement per group, whatever its size: the rows go in as arrays
(PostgreSQL `unnest`), a JSON array (SQLite `json_each`) or one executemany, so that
an event costs the database's work and little Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from trackbook.automations.triggers import start_side_effects
from trackbook.contacts.errors import ContactNotFound, NotAsNamed
from trackbook.contacts.identity import ContactRef, UnknownContact
from trackbook.contacts.service import Visitor, find_or_create_contacts, visitors_as_named
from trackbook.db.tables import events, list_event_properties
from trackbook.db.upsert import upsert
from trackbook.events.errors import CatalogFull, FanOutLimit
from trackbook.events.limits import (
    KnownCatalog,
    catalog_refusals,
    fan_out_refusals,
    record_refused,
)
from trackbook.events.model import Limits, PendingEvent, TrackResult

Outcome = TrackResult | ContactNotFound | NotAsNamed | CatalogFull | FanOutLimit

_EVENT_COLUMNS = (
    "account_id, contact_id, name, title, value, properties, source, message_id, list_id, "
    "occurred_at, received_at"
)
_SUMMARY_KEY = "account_id, contact_id, name, title, series"
_SUMMARY_COLUMNS = f"{_SUMMARY_KEY}, counter, last_value, provider, created_at, updated_at"
# One counter per key however many events of the group it counts (the key is unique in
# the statement), in key order so that two processes lock counters in the same order.
_COUNT_SUMMARIES = f"""
ON CONFLICT ({_SUMMARY_KEY}) DO UPDATE SET
    counter = event_summaries.counter + excluded.counter,
    last_value = excluded.last_value,
    provider = excluded.provider,
    updated_at = excluded.updated_at
RETURNING id, {_SUMMARY_KEY}"""
# A name whitelisted before it was ever tracked has count 0 and placeholder times that
# the first events replace.
_COUNT_NAMES = """
ON CONFLICT (account_id, name) DO UPDATE SET
    count = event_names.count + excluded.count,
    first_seen = CASE
        WHEN event_names.count = 0 THEN excluded.first_seen
        WHEN excluded.first_seen < event_names.first_seen THEN excluded.first_seen
        ELSE event_names.first_seen END,
    last_seen = CASE
        WHEN event_names.count = 0 THEN excluded.last_seen
        WHEN excluded.last_seen > event_names.last_seen THEN excluded.last_seen
        ELSE event_names.last_seen END"""

# PostgreSQL: the whole group in one statement, its events and counters as two JSON
# arrays, so that its text (and its prepared statement) is the same for a group of 1 or
# of 1000, and the driver encodes one text each instead of twenty arrays element by
# element (batch on PostgreSQL: 25.7-26.3k -> 27.0-28.4k events/s). The event ids are
# drawn in `new` and come back by position with each event's counter id, which ties ids
# to rows without relying on the order of RETURNING. Counters of repeatable events come
# aggregated by key, in key order ($2); an event with repeatable=false gets a counter of
# its own (series = its id). Every process runs this same statement, so concurrent
# groups lock counters and names in the same order. A message id stored meanwhile by
# another process fails the statement on its unique key.
_PG_WRITE = f"""
WITH new AS (
    SELECT nextval('events_id_seq') AS id, e.*
    FROM ROWS FROM (json_to_recordset($1::json) AS (
        account_id bigint, contact_id bigint, name text, title text, value text,
        properties jsonb, source text, message_id text, list_id bigint,
        occurred_at timestamptz, received_at timestamptz, repeatable boolean, provider text
    )) WITH ORDINALITY AS e({_EVENT_COLUMNS}, repeatable, provider, position)
), stored AS (
    INSERT INTO events (id, {_EVENT_COLUMNS})
    -- a JSON null stays a JSON null (as SQLAlchemy's JSON type stores None)
    SELECT id, account_id, contact_id, name, title, value,
        coalesce(properties, 'null'::jsonb), source, message_id, list_id, occurred_at,
        received_at
    FROM new
), message_keys AS (
    INSERT INTO event_message_ids (account_id, message_id, event_id)
    SELECT account_id, message_id, id FROM new WHERE message_id IS NOT NULL
    ORDER BY account_id, message_id
), counted AS (
    INSERT INTO event_summaries ({_SUMMARY_COLUMNS})
    SELECT {_SUMMARY_KEY}, counter, last_value, provider, $3::timestamptz, $3::timestamptz
    FROM (
        SELECT account_id, contact_id, name, title, 0::bigint AS series, counter,
            last_value, provider, 0 AS single, position
        FROM ROWS FROM (json_to_recordset($2::json) AS (
            account_id bigint, contact_id bigint, name text, title text, counter bigint,
            last_value text, provider text
        )) WITH ORDINALITY AS s(account_id, contact_id, name, title, counter, last_value,
            provider, position)
        UNION ALL
        SELECT account_id, contact_id, name, coalesce(title, ''), id, 1, value, provider,
            1, position
        FROM new WHERE NOT repeatable
    ) AS counters
    ORDER BY single, position{_COUNT_SUMMARIES}
), named AS (
    INSERT INTO event_names (account_id, name, count, first_seen, last_seen)
    SELECT account_id, name, count, first_seen, last_seen
    FROM unnest($4::bigint[], $5::text[], $6::bigint[], $7::timestamptz[], $8::timestamptz[])
        WITH ORDINALITY AS n(account_id, name, count, first_seen, last_seen, position)
    ORDER BY position{_COUNT_NAMES}
), described AS (
    INSERT INTO event_properties (account_id, event_name, name, first_seen)
    SELECT account_id, event_name, name, first_seen
    FROM unnest($9::bigint[], $10::text[], $11::text[], $12::timestamptz[])
        WITH ORDINALITY AS p(account_id, event_name, name, first_seen, position)
    ORDER BY position
    ON CONFLICT DO NOTHING
)
SELECT new.id, counted.id
FROM new JOIN counted ON counted.account_id = new.account_id
    AND counted.contact_id = new.contact_id AND counted.name = new.name
    AND counted.title = coalesce(new.title, '')
    AND counted.series = CASE WHEN new.repeatable THEN 0 ELSE new.id END
ORDER BY new.position"""
_PG_COUNTER_FIELDS = (
    "account_id",
    "contact_id",
    "name",
    "title",
    "counter",
    "last_value",
    "provider",
)
_PG_KNOWN_KEYS = (
    "SELECT event_id, message_id FROM event_message_ids "
    "WHERE account_id = $1 AND message_id = ANY($2::text[])"
)

# SQLite: one statement per table (no round trips to save).
_SQLITE_INSERT_EVENTS = (
    f"INSERT INTO events (id, {_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_LAST_EVENT_ID = "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
_SQLITE_INSERT_MESSAGE_KEYS = (
    "INSERT INTO event_message_ids (account_id, message_id, event_id) VALUES (?, ?, ?)"
)
_SQLITE_KNOWN_KEYS = (
    "SELECT event_id, message_id FROM event_message_ids "
    "WHERE account_id = ? AND message_id IN ({marks})"
)
# WHERE true: SQLite's grammar needs it between a SELECT and ON CONFLICT.
_SQLITE_COUNT_SUMMARIES = f"""
INSERT INTO event_summaries ({_SUMMARY_COLUMNS})
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
    value ->> 6, value ->> 7, ?, ?
FROM json_each(?) WHERE true ORDER BY key{_COUNT_SUMMARIES}"""
_SQLITE_COUNT_NAMES = (
    "INSERT INTO event_names (account_id, name, count, first_seen, last_seen) "
    f"VALUES (?, ?, ?, ?, ?){_COUNT_NAMES}"
)
_SQLITE_ADD_PROPERTIES = (
    "INSERT INTO event_properties (account_id, event_name, name, first_seen) "
    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


def _known_keys(
    conn: sa.Connection, account_id: int, message_ids: set[str]
) -> tuple[str, tuple[Any, ...]]:
    """The look-up of stored message ids, as SQL for the driver: it runs for every group,
    where building an IN list of a few hundred parameters cost more than the query."""
    if conn.dialect.name == "postgresql":
        return _PG_KNOWN_KEYS, (account_id, list(message_ids))
    marks = ", ".join("?" * len(message_ids))
    return _SQLITE_KNOWN_KEYS.format(marks=marks), (account_id, *message_ids)


def _replayed(conn: sa.Connection, group: list[PendingEvent]) -> dict[tuple[int, str], TrackResult]:
    """Events already stored under the message ids of this group."""
    by_account: dict[int, set[str]] = defaultdict(set)
    for pending in group:
        if pending.command.message_id is not None:
            by_account[pending.account_id].add(pending.command.message_id)
    found: dict[tuple[int, str], TrackResult] = {}
    for account_id, message_ids in by_account.items():
        # the keys first (a primary-key lookup), then only the events they name: joining
        # the partitioned events table by id alone would visit every partition
        known: dict[int, str] = dict(
            conn.exec_driver_sql(*_known_keys(conn, account_id, message_ids)).all()
        )
        if not known:
            continue
        rows = conn.execute(
            sa.select(
                events.c.id, events.c.contact_id, events.c.occurred_at, events.c.received_at
            ).where(events.c.account_id == account_id, events.c.id.in_(list(known)))
        )
        for row in rows:
            found[account_id, known[row.id]] = TrackResult(
                row.id, row.contact_id, row.occurred_at, row.received_at, duplicate=True
            )
    return found


def _contact_ids(
    conn: sa.Connection, group: list[PendingEvent], *, now: datetime
) -> dict[tuple[int, ContactRef], int | ContactNotFound]:
    wanted: dict[int, dict[ContactRef, UnknownContact]] = defaultdict(dict)
    for pending in group:
        if pending.command.as_named is not None:
            continue
        wanted[pending.account_id].setdefault(
            pending.command.contact, pending.command.unknown_contact
        )
    resolved: dict[tuple[int, ContactRef], int | ContactNotFound] = {}
    for account_id, refs in wanted.items():
        for ref, outcome in find_or_create_contacts(conn, account_id, refs, now=now).items():
            resolved[account_id, ref] = outcome
    return resolved


def _contacts(
    conn: sa.Connection, group: list[PendingEvent], *, now: datetime
) -> tuple[list[int | ContactNotFound | NotAsNamed], dict[int, str]]:
    """The contact id of each event of the group, or why it has none; and the visitor
    id of each event stored only as named (`as_named`), by index."""
    contact_ids = _contact_ids(conn, group, now=now)
    named = [
        (index, pending.account_id, pending.command.as_named)
        for index, pending in enumerate(group)
        if pending.command.as_named is not None
    ]
    visitors: dict[int, Visitor | None] = {}
    if named:
        found = visitors_as_named(conn, [(account_id, naming) for _, account_id, naming in named])
        visitors = {index: visitor for (index, _, _), visitor in zip(named, found, strict=True)}
    contact_of: list[int | ContactNotFound | NotAsNamed] = []
    visitor_ids: dict[int, str] = {}
    for index, pending in enumerate(group):
        if pending.command.as_named is None:
            contact_of.append(contact_ids[pending.account_id, pending.command.contact])
        elif (visitor := visitors[index]) is None:
            contact_of.append(NotAsNamed("the visitor is not yet as the identify names it"))
        else:
            contact_of.append(visitor.contact_id)
            visitor_ids[index] = visitor.visitor_id
    return contact_of, visitor_ids


@contextmanager
def _planned_for_these_values(conn: sa.Connection) -> Iterator[None]:
    """On PostgreSQL, the statements inside are planned for the values they run with.

    A prepared statement soon runs on a generic plan, made without its values; for the
    look-ups by list (message ids, contacts) one made while a table was small reads the
    account's rows for every group (the same-work reference of the 200k-event import
    benchmark: 111 s of 132 in its message-id look-up). Only the look-ups: the writes
    after them check their foreign keys row by row with statements of PostgreSQL's
    own, which a custom plan each re-plans row by row (its events and counters took
    31 s with custom plans, 16 s without)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    yield
    conn.exec_driver_sql("SET LOCAL plan_cache_mode TO DEFAULT")


def write_group(
    conn: sa.Connection,
    group: list[PendingEvent],
    *,
    now: datetime,
    automation_cutoff: timedelta = timedelta(hours=72),
    limits: Limits = Limits(),  # noqa: B008 - frozen: the same limits every call
    known: KnownCatalog | None = None,
) -> tuple[list[Outcome], int]:
    """Stores every event of `group` that can be stored, inside the caller's transaction,
    with the automation runs and webhook deliveries they start (how many is returned).

    A replayed message id, an unknown contact, a visitor not as its event's identify
    names it, a name beyond the catalog's limits (recorded as dropped) and an event
    beyond its automation fan-out are outcomes of that one event; any exception means
    the whole transaction must be rolled back. `known` is what the caller remembers of
    the catalogs from one group to the next.
    """
    side_effects = 0
    with _planned_for_these_values(conn):
        replayed = _replayed(conn, group)
        contact_of, visitor_ids = _contacts(conn, group, now=now)
    outcomes: list[Outcome | None] = [None] * len(group)
    to_insert: list[int] = []
    first_of_message: dict[tuple[int, str], int] = {}
    repeats: dict[int, int] = {}
    stored_contacts: dict[int, int] = {}
    for index, pending in enumerate(group):
        command = pending.command
        if command.message_id is not None:
            key = (pending.account_id, command.message_id)
            if key in replayed:
                outcomes[index] = replayed[key]
                continue
            if key in first_of_message:
                repeats[index] = first_of_message[key]
                continue
        contact = contact_of[index]
        if isinstance(contact, ContactNotFound | NotAsNamed):
            outcomes[index] = contact
            continue
        if command.message_id is not None:
            first_of_message[pending.account_id, command.message_id] = index
        stored_contacts[index] = contact
        to_insert.append(index)

    refused = catalog_refusals(conn, group, to_insert, limits, known or KnownCatalog())
    record_refused(conn, group, refused, now=now)
    within_catalog = [index for index in to_insert if index not in refused]
    beyond_fan_out = fan_out_refusals(conn, group, within_catalog, limits)
    for index, error in (refused | beyond_fan_out).items():
        outcomes[index] = error
    to_insert = [index for index in within_catalog if index not in beyond_fan_out]

    if to_insert:
        rows = [_event_row(group[index], stored_contacts[index]) for index in to_insert]
        stored = [(group[index], rows[n]) for n, index in enumerate(to_insert)]
        write = _write_postgresql if conn.dialect.name == "postgresql" else _write_sqlite
        summary_ids: dict[int, int] = {}
        for row, (event_id, summary_id) in zip(rows, write(conn, stored, now=now), strict=True):
            row["id"] = event_id
            summary_ids[event_id] = summary_id
        for index, row in zip(to_insert, rows, strict=True):
            row["derived_from"] = group[index].command.derived_from
        side_effects = start_side_effects(conn, rows, now=now, cutoff=automation_cutoff)
        for index, row in zip(to_insert, rows, strict=True):
            outcomes[index] = TrackResult(
                row["id"],
                row["contact_id"],
                row["occurred_at"],
                row["received_at"],
                duplicate=False,
                summary_id=summary_ids[row["id"]],
                visitor_id=visitor_ids.get(index),
            )

    for index, original in repeats.items():
        first = outcomes[original]
        assert first is not None  # noqa: S101 - set in the loops above
        outcomes[index] = (
            TrackResult(
                first.event_id,
                first.contact_id,
                first.occurred_at,
                first.received_at,
                duplicate=True,
            )
            if isinstance(first, TrackResult)
            else first  # refused by a limit: so is its repeat
        )
    return [outcome for outcome in outcomes if outcome is not None], side_effects


def _event_row(pending: PendingEvent, contact_id: int) -> dict[str, Any]:
    command = pending.command
    return {
        "account_id": pending.account_id,
        "contact_id": contact_id,
        "name": command.name,
        "title": command.title,
        "value": command.value,
        "properties": command.properties,
        "source": command.source,
        "message_id": command.message_id,
        "list_id": command.list_id,
        "occurred_at": pending.occurred_at,
        "received_at": pending.received_at,
    }


def _json(value: Any) -> str:
    # As SQLAlchemy's JSON type stores it: None becomes the JSON null, not SQL NULL.
    return orjson.dumps(value).decode()


def _sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores: naive UTC with microseconds."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the arrays PostgreSQL unnests."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _event_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["account_id"],
        row["contact_id"],
        row["name"],
        row["title"],
        row["value"],
        _json(row["properties"]),
        row["source"],
        row["message_id"],
        row["list_id"],
    )


def _write_postgresql(
    conn: sa.Connection, stored: list[tuple[PendingEvent, dict[str, Any]]], *, now: datetime
) -> list[tuple[int, int]]:
    """Inserts the events with their message-id keys and counts them; the (event id,
    counter id) of each, in order."""
    rows = [row for _, row in stored]
    events_ = [
        {
            **row,
            "repeatable": pending.command.repeatable,
            "provider": pending.command.provider or row["source"],
        }
        for pending, row in stored
    ]
    counters, _ = _summaries([item for item in stored if item[0].command.repeatable])
    names, properties, list_properties = _catalog(rows)
    written = conn.exec_driver_sql(
        _PG_WRITE,
        (
            orjson.dumps(events_).decode(),
            orjson.dumps(
                [
                    dict(zip(_PG_COUNTER_FIELDS, counter[:4] + counter[5:], strict=True))
                    for counter in counters
                ]
            ).decode(),
            now,
            *_columns(names, 5),
            *_columns(properties, 4),
        ),
    )
    ids = [(event_id, summary_id) for event_id, summary_id in written]
    _add_list_properties(conn, list_properties)
    return ids


def _write_sqlite(
    conn: sa.Connection, stored: list[tuple[PendingEvent, dict[str, Any]]], *, now: datetime
) -> list[tuple[int, int]]:
    """As _write_postgresql, in one statement per table. The writer holds the
    database's write lock (BEGIN IMMEDIATE), so the ids after the largest ever given
    (AUTOINCREMENT keeps it in sqlite_sequence, deleted events included) are free:
    they are the ids SQLite itself would have given."""
    rows = [row for _, row in stored]
    last = conn.exec_driver_sql(_SQLITE_LAST_EVENT_ID).scalar() or 0
    for event_id, row in enumerate(rows, start=last + 1):
        row["id"] = event_id
    # the events of a group mostly share their times (received together, no timestamp)
    texts: dict[datetime, str] = {}

    def text(moment: datetime) -> str:
        found = texts.get(moment)
        if found is None:
            found = texts[moment] = _sqlite_time(moment)
        return found

    conn.exec_driver_sql(
        _SQLITE_INSERT_EVENTS,
        [
            (row["id"], *_event_values(row), text(row["occurred_at"]), text(row["received_at"]))
            for row in rows
        ],
    )
    keys = [
        (row["account_id"], row["message_id"], row["id"])
        for row in rows
        if row["message_id"] is not None
    ]
    if keys:
        # the unique key: a message id stored meanwhile by another process fails the
        # group here, and the writer then stores each event alone (a duplicate)
        conn.exec_driver_sql(_SQLITE_INSERT_MESSAGE_KEYS, keys)
    counters, counted_in = _summaries(stored)
    names, properties, list_properties = _catalog(rows)
    stamp = _sqlite_time(now)
    upserted = conn.exec_driver_sql(_SQLITE_COUNT_SUMMARIES, (stamp, stamp, _json(counters)))
    summary_ids = {
        (account_id, contact_id, name, title, series): summary_id
        for summary_id, account_id, contact_id, name, title, series in upserted
    }
    conn.exec_driver_sql(
        _SQLITE_COUNT_NAMES,
        [(*name[:3], _sqlite_time(name[3]), _sqlite_time(name[4])) for name in names],
    )
    if properties:
        conn.exec_driver_sql(
            _SQLITE_ADD_PROPERTIES,
            [(*property_[:3], _sqlite_time(property_[3])) for property_ in properties],
        )
    _add_list_properties(conn, list_properties)
    return [(row["id"], summary_ids[key]) for row, key in zip(rows, counted_in, strict=True)]


def _add_list_properties(
    conn: sa.Connection, list_properties: list[tuple[int, int, str, str]]
) -> None:
    if list_properties:
        conn.execute(
            upsert(conn, list_event_properties).on_conflict_do_nothing(),
            [
                {"account_id": account_id, "list_id": list_id, "event_name": event, "name": name}
                for account_id, list_id, event, name in list_properties
            ],
        )


def _summaries(
    stored: list[tuple[PendingEvent, dict[str, Any]]],
) -> tuple[list[list[Any]], list[tuple[int, int, str, str, int]]]:
    """One row per (contact, name, title, series) counter the events count in, in key
    order, and the key each event counts in; an event with repeatable=false must
    already have its id (its series)."""
    summaries: dict[tuple[int, int, str, str, int], list[Any]] = {}
    counted_in: list[tuple[int, int, str, str, int]] = []
    for pending, row in stored:
        series = 0 if pending.command.repeatable else row["id"]
        key = (row["account_id"], row["contact_id"], row["name"], row["title"] or "", series)
        counted_in.append(key)
        provider = pending.command.provider or row["source"]
        summary = summaries.get(key)
        if summary is None:
            summaries[key] = [*key, 1, row["value"], provider]
        else:
            summary[5] += 1
            summary[6] = row["value"]
            summary[7] = provider
    return [summaries[key] for key in sorted(summaries)], counted_in


def _catalog(
    rows: list[dict[str, Any]],
) -> tuple[list[list[Any]], list[tuple[int, str, str, datetime]], list[tuple[int, int, str, str]]]:
    """The name rows (count, first and last seen), property-name rows and list
    property-name rows of the events, each in key order."""
    names: dict[tuple[int, str], list[Any]] = {}
    properties: set[tuple[int, str, str]] = set()
    list_properties: set[tuple[int, int, str, str]] = set()
    for row in rows:
        key = (row["account_id"], row["name"])
        occurred_at = row["occurred_at"]
        seen = names.get(key)
        if seen is None:
            names[key] = [*key, 1, occurred_at, occurred_at]
        else:
            seen[2] += 1
            seen[3] = min(seen[3], occurred_at)
            seen[4] = max(seen[4], occurred_at)
        for property_name in row["properties"] or ():
            properties.add((row["account_id"], row["name"], property_name[:255]))
            if row["list_id"] is not None:
                list_properties.add(
                    (row["account_id"], row["list_id"], row["name"], property_name[:255])
                )
    added = [
        (account_id, event_name, name, names[account_id, event_name][3])
        for account_id, event_name, name in sorted(properties)
    ]
    return [names[key] for key in sorted(names)], added, sorted(list_properties)
