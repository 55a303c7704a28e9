"""The limits a group of events is held to as it is stored: how many event and property
names an account's catalog may hold, and how many events automations may record from
one incoming event. Both are checked in the transaction that would store the events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from trackbook.db.tables import event_derivations, event_names, event_properties
from trackbook.db.upsert import upsert
from trackbook.events import dropped
from trackbook.events.errors import CatalogFull, FanOutLimit
from trackbook.events.model import Limits, PendingEvent

PROPERTY_NAME_MAX = 255
"""A property name is catalogued by its first 255 characters."""
_CATALOG_LOCK = 7_123_402_612  # any constant: with the account id, the advisory lock key
_PAIRS_PER_LOOKUP = 1000


class KnownCatalog:
    """Event names and property names the database has shown to be in an account's
    catalog, remembered by one writer: a tracked name never leaves the catalog, so a
    group that brings only these is not looked up at all (the look-up doubled the time
    of writing a group of one on SQLite). Bounded: emptied when full."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._names: set[tuple[int, str]] = set()
        self._pairs: set[tuple[int, str, str]] = set()

    def unknown(
        self, account_id: int, names: set[str], pairs: set[tuple[str, str]]
    ) -> tuple[set[str], set[tuple[str, str]]]:
        """The names and (event name, property name) pairs not remembered."""
        return (
            {name for name in names if (account_id, name) not in self._names},
            {pair for pair in pairs if (account_id, *pair) not in self._pairs},
        )

    def remember(self, account_id: int, names: set[str], pairs: set[tuple[str, str]]) -> None:
        if len(self._names) + len(self._pairs) + len(names) + len(pairs) > self._max_entries:
            self._names.clear()
            self._pairs.clear()
        self._names.update((account_id, name) for name in names)
        self._pairs.update((account_id, *pair) for pair in pairs)


def property_names(pending: PendingEvent) -> set[str]:
    return {name[:PROPERTY_NAME_MAX] for name in pending.command.properties or ()}


def catalog_refusals(
    conn: sa.Connection,
    group: Sequence[PendingEvent],
    candidates: list[int],
    limits: Limits,
    known: KnownCatalog,
) -> dict[int, CatalogFull]:
    """The events among `candidates` (indexes into `group`) that would bring a new event
    name or property name into their account's catalog beyond its limits, each with why.

    The common group brings nothing new, known already to `known` or else by one look-up
    per account. A group that does counts under a lock of its account (PostgreSQL;
    SQLite has one writer), so that two groups written at once cannot both take the
    last place."""
    by_account: dict[int, list[int]] = defaultdict(list)
    for index in candidates:
        by_account[group[index].account_id].append(index)
    refused: dict[int, CatalogFull] = {}
    for account_id, indexes in sorted(by_account.items()):
        events = [group[index] for index in indexes]
        all_names = {pending.command.name for pending in events}
        all_pairs = {
            (pending.command.name, name) for pending in events for name in property_names(pending)
        }
        names, pairs = known.unknown(account_id, all_names, all_pairs)
        if not names and not pairs:
            continue
        found_names, found_pairs = _known(conn, account_id, names, pairs)
        known.remember(account_id, found_names, found_pairs)
        if names <= found_names and pairs <= found_pairs:
            continue
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CATALOG_LOCK + account_id)))
            # what a group committed while this one waited for the lock
            found_names, found_pairs = _known(conn, account_id, names, pairs)
        known_names = (all_names - names) | found_names
        known_pairs = (all_pairs - pairs) | found_pairs
        name_count = conn.scalar(
            sa.select(sa.func.count())
            .select_from(event_names)
            .where(event_names.c.account_id == account_id)
        )
        growing = {event_name for event_name, _ in pairs - known_pairs}
        property_counts: dict[str, int] = defaultdict(int)
        if growing:
            counted = conn.execute(
                sa.select(event_properties.c.event_name, sa.func.count())
                .where(
                    event_properties.c.account_id == account_id,
                    event_properties.c.event_name.in_(growing),
                )
                .group_by(event_properties.c.event_name)
            )
            property_counts.update({event_name: int(count) for event_name, count in counted})
        names_held = int(name_count or 0)
        for index, pending in zip(indexes, events, strict=True):
            name = pending.command.name
            new_name = name not in known_names
            if new_name and names_held >= limits.max_event_names:
                refused[index] = CatalogFull(
                    "name",
                    f"is new, and the account already has {limits.max_event_names} event "
                    "names: the most it may have",
                )
                continue
            added = {key for key in property_names(pending) if (name, key) not in known_pairs}
            if added and property_counts[name] + len(added) > limits.max_property_names:
                refused[index] = CatalogFull(
                    "properties",
                    f"would give the event name {name!r} more than "
                    f"{limits.max_property_names} property names: the most it may have",
                )
                continue
            if new_name:
                known_names.add(name)
                names_held += 1
            known_pairs |= {(name, key) for key in added}
            property_counts[name] += len(added)
    return refused


def _known(
    conn: sa.Connection, account_id: int, names: set[str], pairs: set[tuple[str, str]]
) -> tuple[set[str], set[tuple[str, str]]]:
    """Which of the names, and of the (event name, property name) pairs, the account's
    catalog already holds."""
    known_names = set(
        conn.scalars(
            sa.select(event_names.c.name).where(
                event_names.c.account_id == account_id, event_names.c.name.in_(names)
            )
        )
    )
    known_pairs: set[tuple[str, str]] = set()
    wanted = sorted(pairs)
    # in slices: both databases bound the parameters of one statement (SQLite 32,766)
    for start in range(0, len(wanted), _PAIRS_PER_LOOKUP):
        found = conn.execute(
            sa.select(event_properties.c.event_name, event_properties.c.name).where(
                event_properties.c.account_id == account_id,
                sa.tuple_(event_properties.c.event_name, event_properties.c.name).in_(
                    wanted[start : start + _PAIRS_PER_LOOKUP]
                ),
            )
        )
        known_pairs.update((event_name, name) for event_name, name in found)
    return known_names, known_pairs


def record_refused(
    conn: sa.Connection,
    group: Sequence[PendingEvent],
    refused: dict[int, CatalogFull],
    *,
    now: datetime,
) -> None:
    """Each refused event as a dropped event with why, in the group's transaction."""
    for index, error in sorted(refused.items()):
        pending = group[index]
        command = pending.command
        dropped.record_in_transaction(
            conn,
            pending.account_id,
            source=command.source,
            reason=dropped.CATALOG_FULL,
            payload={
                "event": {
                    "name": command.name,
                    "title": command.title,
                    "value": command.value,
                    "properties": command.properties,
                    "message_id": command.message_id,
                },
                "error": error.message,
            },
            now=now,
        )


def fan_out_refusals(
    conn: sa.Connection, group: Sequence[PendingEvent], candidates: list[int], limits: Limits
) -> dict[int, FanOutLimit]:
    """The events among `candidates` that automations record beyond the budget of the
    incoming event they come from; the others are counted against it. The count is one
    row per incoming event, raised only while under the limit: workers on several
    nodes draw on it at once and never exceed it."""
    refused: dict[int, FanOutLimit] = {}
    for index in candidates:
        pending = group[index]
        derivation = pending.command.derived_from
        if derivation is None:
            continue
        statement = upsert(conn, event_derivations).values(
            account_id=pending.account_id,
            origin_event_id=derivation.origin_event_id,
            derived=1,
        )
        counted = conn.execute(
            statement.on_conflict_do_update(
                index_elements=["account_id", "origin_event_id"],
                set_={"derived": event_derivations.c.derived + 1},
                where=event_derivations.c.derived < limits.max_derived_events,
            ).returning(event_derivations.c.derived)
        ).first()
        if counted is None:
            refused[index] = FanOutLimit(
                f"event {derivation.origin_event_id} has already led automations to record "
                f"{limits.max_derived_events} events, the most one incoming event may "
                "(TRACKBOOK_AUTOMATION_MAX_DERIVED_EVENTS)"
            )
    return refused
