"""Find, create, change and merge contacts; lists and their members."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.automations.references import automations_naming
from trackbook.contacts.errors import (
    ContactConflict,
    ContactExists,
    ContactNotFound,
    ListConflict,
    ListInUse,
    ListNotFound,
)
from trackbook.contacts.identity import (
    ContactRef,
    Credential,
    UnknownContact,
    VisitorNaming,
    is_id,
)
from trackbook.db.engine import Database
from trackbook.db.tables import (
    automation_runs,
    contact_aliases,
    contact_tags,
    contacts,
    deliveries,
    dropped_events,
    event_message_ids,
    event_summaries,
    events,
    list_event_properties,
    list_members,
    lists,
    segments,
    tags,
)
from trackbook.db.upsert import upsert
from trackbook.errors import Invalid
from trackbook.events import dropped
from trackbook.segments.definition import named_lists

STATUSES = ("subscribed", "pending", "unsubscribed", "bounced", "complained", "transactional")


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    email: str | None
    external_id: str | None
    wp_user_id: int | None
    first_name: str | None
    last_name: str | None
    status: str
    created_at: datetime
    updated_at: datetime
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class ContactDetails:
    contact: Contact
    aliases: list[str]
    list_ids: list[int]
    tags: list[str]


@dataclass(frozen=True, slots=True)
class ContactList:
    id: int
    name: str
    created_at: datetime
    member_count: int


def contact_from_row(row: sa.Row[Any]) -> Contact:
    return Contact(
        id=row.id,
        email=row.email,
        external_id=row.external_id,
        wp_user_id=row.wp_user_id,
        first_name=row.first_name,
        last_name=row.last_name,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        phone=row.phone,
    )


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise Invalid("status", f"must be one of {', '.join(STATUSES)}")
    return status


# Where each kind of identifier is looked up: (table, key column, contact id column,
# PostgreSQL type of the key).
_LOOKUPS: Mapping[str, tuple[str, str, str, str]] = {
    "id": ("contacts", "id", "id", "bigint"),
    "email": ("contacts", "email", "id", "text"),
    "external_id": ("contacts", "external_id", "id", "text"),
    "wp_user_id": ("contacts", "wp_user_id", "id", "bigint"),
    "anonymous_id": ("contact_aliases", "alias", "contact_id", "text"),
}
_FIND_POSTGRESQL = {
    kind: f"SELECT {key}, {found} FROM {table} "
    f"WHERE account_id = $1 AND {key} = ANY($2::{key_type}[])"
    for kind, (table, key, found, key_type) in _LOOKUPS.items()
}


def _find_statement(conn: sa.Connection, kind: str, count: int) -> str:
    # Written as SQL for the driver: this runs for every group the event writer
    # commits, where building and caching a Core statement costs more than the query.
    if conn.dialect.name == "postgresql":
        return _FIND_POSTGRESQL[kind]
    table, key, found, _ = _LOOKUPS[kind]
    marks = ", ".join("?" * count)
    return f"SELECT {key}, {found} FROM {table} WHERE account_id = ? AND {key} IN ({marks})"


def _find_ids(
    conn: sa.Connection, account_id: int, refs: Iterable[ContactRef]
) -> dict[ContactRef, int]:
    """One query per kind of identifier, whatever the number of refs."""
    wanted: dict[str, dict[int | str, list[ContactRef]]] = {}
    for ref in refs:
        lookup = ref.lookup
        assert lookup is not None  # noqa: S101 - ContactRef.build guarantees one
        kind, value = lookup
        wanted.setdefault(kind, {}).setdefault(value, []).append(ref)
    found: dict[ContactRef, int] = {}
    for kind, by_value in wanted.items():
        values = list(by_value)
        statement = _find_statement(conn, kind, len(values))
        parameters = (
            (account_id, values) if conn.dialect.name == "postgresql" else (account_id, *values)
        )
        for value, contact_id in conn.exec_driver_sql(statement, parameters):
            for ref in by_value.get(value, ()):
                found[ref] = contact_id
    return found


async def _insert_contact(
    conn: AsyncConnection,
    account_id: int,
    *,
    now: datetime,
    email: str | None = None,
    external_id: str | None = None,
    wp_user_id: int | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    phone: str | None = None,
    status: str = "subscribed",
) -> sa.Row[Any] | None:
    """The new contact's row, or None when a contact with one of its unique fields
    exists, perhaps committed a moment ago by a concurrent request: the insert does not
    fail then, so the caller decides what an existing contact means (check-then-insert
    in one transaction still lets two requests both insert on PostgreSQL)."""
    return (
        await conn.execute(
            upsert(conn, contacts)
            .values(
                account_id=account_id,
                email=email,
                external_id=external_id,
                wp_user_id=wp_user_id,
                first_name=first_name,
                last_name=last_name,
                phone=phone,
                status=status,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(*contacts.c)
        )
    ).one_or_none()


def find_or_create_contacts(
    conn: sa.Connection,
    account_id: int,
    wanted: Mapping[ContactRef, UnknownContact],
    *,
    now: datetime,
) -> dict[ContactRef, int | ContactNotFound]:
    """The contact id for each ref, creating contacts as each ref's policy allows.

    A concurrent creation of the same contact by another process surfaces as an
    IntegrityError; the caller retries and then finds the contact.
    """
    resolved: dict[ContactRef, int | ContactNotFound] = dict(_find_ids(conn, account_id, wanted))
    # An email nobody has with an external id someone has names that contact, as in
    # upsert_contact: a new contact with both would clash with it on the external id.
    by_external: dict[ContactRef, list[ContactRef]] = {}
    for ref in wanted:
        if (
            ref not in resolved
            and ref.external_id is not None
            and ref.lookup == ("email", ref.email)
        ):
            by_external.setdefault(ContactRef(external_id=ref.external_id), []).append(ref)
    for named, contact_id in _find_ids(conn, account_id, by_external).items():
        resolved.update(dict.fromkeys(by_external[named], contact_id))
    creating: list[ContactRef] = []
    for ref, policy in wanted.items():
        if ref in resolved:
            continue
        kind = ref.lookup[0] if ref.lookup else "contact"
        creatable = kind not in ("id", "wp_user_id") and (
            (policy is UnknownContact.CREATE_IDENTIFIED and ref.identified)
            or policy is UnknownContact.CREATE_ALWAYS
        )
        if creatable:
            creating.append(ref)
        else:
            resolved[ref] = ContactNotFound(f"no contact has this {kind}")
    if not creating:
        return resolved
    # every new contact of the group in one statement: one round trip, not one each;
    # in key order, so that two transactions creating the same contacts wait on each
    # other instead of deadlocking
    creating.sort(key=lambda ref: (ref.email or "", ref.external_id or "", ref.anonymous_id or ""))
    created = conn.execute(
        contacts.insert().returning(contacts.c.id, sort_by_parameter_order=True),
        [
            {
                "account_id": account_id,
                "email": ref.email,
                "external_id": ref.external_id,
                "wp_user_id": None,
                "first_name": None,
                "last_name": None,
                "phone": None,
                "status": "subscribed",
                "created_at": now,
                "updated_at": now,
            }
            for ref in creating
        ],
    )
    ids = list(created.scalars())
    aliases = [
        {
            "account_id": account_id,
            "alias": ref.anonymous_id,
            "contact_id": contact_id,
            "created_at": now,
        }
        for ref, contact_id in zip(creating, ids, strict=True)
        if ref.anonymous_id is not None
    ]
    if aliases:
        conn.execute(contact_aliases.insert(), aliases)
    resolved.update(zip(creating, ids, strict=True))
    return resolved


async def resolve_contacts(
    conn: AsyncConnection,
    account_id: int,
    wanted: Mapping[ContactRef, UnknownContact],
    *,
    now: datetime,
) -> dict[ContactRef, int | ContactNotFound]:
    return await conn.run_sync(find_or_create_contacts, account_id, wanted, now=now)


async def resolve_contact(
    conn: AsyncConnection,
    account_id: int,
    ref: ContactRef,
    policy: UnknownContact,
    *,
    now: datetime,
) -> int:
    result = (await resolve_contacts(conn, account_id, {ref: policy}, now=now))[ref]
    if isinstance(result, ContactNotFound):
        raise result
    return result


async def get_contact(conn: AsyncConnection, account_id: int, contact_id: int) -> Contact:
    if not is_id(contact_id):
        raise ContactNotFound(f"contact {contact_id} does not exist")
    row = (
        await conn.execute(
            sa.select(contacts).where(
                contacts.c.account_id == account_id, contacts.c.id == contact_id
            )
        )
    ).one_or_none()
    if row is None:
        raise ContactNotFound(f"contact {contact_id} does not exist")
    return contact_from_row(row)


async def get_contact_details(
    conn: AsyncConnection, account_id: int, contact_id: int
) -> ContactDetails:
    contact = await get_contact(conn, account_id, contact_id)
    aliases = await conn.scalars(
        sa.select(contact_aliases.c.alias)
        .where(
            contact_aliases.c.account_id == account_id,
            contact_aliases.c.contact_id == contact_id,
        )
        .order_by(contact_aliases.c.id)
    )
    list_ids = await conn.scalars(
        sa.select(list_members.c.list_id)
        .where(list_members.c.account_id == account_id, list_members.c.contact_id == contact_id)
        .order_by(list_members.c.list_id)
    )
    tag_names = await conn.scalars(
        sa.select(tags.c.name)
        .join(contact_tags, contact_tags.c.tag_id == tags.c.id)
        .where(contact_tags.c.account_id == account_id, contact_tags.c.contact_id == contact_id)
        .order_by(tags.c.name)
    )
    return ContactDetails(contact, list(aliases), list(list_ids), list(tag_names))


async def find_contacts(
    conn: AsyncConnection,
    account_id: int,
    *,
    email: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[Contact]:
    query = (
        sa.select(contacts)
        .where(contacts.c.account_id == account_id)
        .order_by(contacts.c.id)
        .limit(limit)
    )
    if email is not None:
        query = query.where(contacts.c.email == email)
    if after_id is not None:
        query = query.where(contacts.c.id > after_id)
    return [contact_from_row(row) for row in await conn.execute(query)]


async def search_contacts(
    conn: AsyncConnection,
    account_id: int,
    *,
    search: str | None = None,
    offset: int = 0,
    limit: int = 15,
) -> tuple[int, list[Contact]]:
    """Contacts whose email or name contains `search`, newest first, with the total."""
    scope = contacts.c.account_id == account_id
    if search:
        needle = search.strip().lower()
        scope = sa.and_(
            scope,
            sa.or_(
                *(
                    sa.func.lower(column).contains(needle, autoescape=True)
                    for column in (contacts.c.email, contacts.c.first_name, contacts.c.last_name)
                )
            ),
        )
    total = await conn.scalar(sa.select(sa.func.count()).select_from(contacts).where(scope))
    rows = await conn.execute(
        sa.select(contacts).where(scope).order_by(contacts.c.id.desc()).offset(offset).limit(limit)
    )
    return int(total or 0), [contact_from_row(row) for row in rows]


async def _id_by(
    conn: AsyncConnection, account_id: int, column: sa.Column[Any], value: object
) -> int | None:
    return await conn.scalar(
        sa.select(contacts.c.id).where(contacts.c.account_id == account_id, column == value)
    )


async def upsert_contact(
    conn: AsyncConnection,
    account_id: int,
    *,
    credential: Credential,
    now: datetime,
    email: str | None = None,
    external_id: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> tuple[Contact, bool]:
    """The contact with this email or external id, updated with `fields` and given the
    other identifier as far as the credential may (`change_existing`), or a new one.
    Returns the contact and whether it was created."""
    if email is None and external_id is None:
        raise Invalid("email", "or external_id is required")
    by_email = None if email is None else await _id_by(conn, account_id, contacts.c.email, email)
    by_external = (
        None
        if external_id is None
        else await _id_by(conn, account_id, contacts.c.external_id, external_id)
    )
    if by_email is not None and by_external is not None and by_email != by_external:
        if not credential.publishable:
            raise ContactConflict("email and external_id belong to two different contacts")
        # A conflict would tell a publishable key that both are held: the email names
        # the contact, and the external id is a change refused like any other.
        by_external = None
    existing = by_email if by_email is not None else by_external
    changes = dict(fields or {})
    if existing is None:
        row = await _insert_contact(
            conn, account_id, now=now, email=email, external_id=external_id, **changes
        )
        if row is not None:
            return contact_from_row(row), True
        # a concurrent request created it after the look-up: it is the one to update
        existing = await _existing_id(conn, account_id, email=email, external_id=external_id)
        if existing is None:
            raise ContactConflict("a contact with one of these fields exists already")
    if email is not None:
        changes["email"] = email
    if external_id is not None:
        changes["external_id"] = external_id
    contact = await change_existing(
        conn, account_id, existing, credential=credential, now=now, changes=changes
    )
    return contact, False


async def create_contact(
    conn: AsyncConnection,
    account_id: int,
    *,
    now: datetime,
    email: str,
    fields: Mapping[str, Any] | None = None,
    list_ids: Sequence[int] = (),
    tag_ids: Sequence[int] = (),
    tags: Sequence[str] = (),
) -> Contact:
    """A new contact with this email, on these lists and with these tags (by id or by
    name), or ContactExists and nothing stored: the routes that only create
    (ActiveCampaign's POST /contacts, FluentCRM's POST /subscribers). Of several
    concurrent creates of one email exactly one succeeds."""
    row = await _insert_contact(conn, account_id, now=now, email=email, **dict(fields or {}))
    if row is None:
        raise ContactExists("a contact with this email exists already")
    contact = contact_from_row(row)
    for list_id in list_ids:
        await add_to_list(conn, account_id, list_id, contact.id, now=now)
    names = [*await tag_names(conn, account_id, tag_ids), *tags]
    if names:
        await tag_contact(conn, account_id, contact.id, names, now=now)
    return contact


async def _existing_id(
    conn: AsyncConnection, account_id: int, *, email: str | None, external_id: str | None
) -> int | None:
    if email is not None and (found := await _id_by(conn, account_id, contacts.c.email, email)):
        return found
    if external_id is None:
        return None
    return await _id_by(conn, account_id, contacts.c.external_id, external_id)


async def change_existing(
    conn: AsyncConnection,
    account_id: int,
    contact_id: int,
    *,
    credential: Credential,
    now: datetime,
    changes: Mapping[str, Any],
) -> Contact:
    """The one rule of what a credential may change of a contact that already exists,
    for every dialect: a secret key anything (`update_contact`); a publishable key,
    which anyone can read in a web page, nothing: not its email, external id, names,
    phone or status. Its request is otherwise carried out (the event stored, the
    visitor linked) and answered as usual, so that the answer tells nothing held and
    browser clients do not retry; what it asked to change is kept in the dropped
    events, for the account to see."""
    if not credential.publishable:
        return await update_contact(conn, account_id, contact_id, now=now, changes=changes)
    contact = await get_contact(conn, account_id, contact_id)
    refused = {name: value for name, value in changes.items() if getattr(contact, name) != value}
    if refused:
        await _record_refused(conn, account_id, contact, refused, credential=credential, now=now)
    return contact


async def _record_refused(
    conn: AsyncConnection,
    account_id: int,
    contact: Contact,
    refused: Mapping[str, Any],
    *,
    credential: Credential,
    now: datetime,
) -> None:
    """Keeps what a publishable key asked to change of a contact in the dropped events."""
    await dropped.record(
        conn,
        account_id,
        source=credential.source,
        reason=dropped.CHANGE_REFUSED,
        payload={
            "contact": {"email": contact.email, "external_id": contact.external_id},
            "refused": dict(refused),
        },
        # named as stored, so that exporting or erasing the contact finds it
        naming=ContactRef(email=contact.email, external_id=contact.external_id),
        now=now,
    )


async def update_contact(
    conn: AsyncConnection,
    account_id: int,
    contact_id: int,
    *,
    now: datetime,
    changes: Mapping[str, Any],
) -> Contact:
    for column in ("email", "external_id", "wp_user_id"):
        value = changes.get(column)
        if value is None:
            continue
        holder = await _id_by(conn, account_id, contacts.c[column], value)
        if holder is not None and holder != contact_id:
            raise ContactConflict(f"another contact already has this {column}")
    row = (
        await conn.execute(
            contacts.update()
            .where(contacts.c.account_id == account_id, contacts.c.id == contact_id)
            .values(**changes, updated_at=now)
            .returning(*contacts.c)
        )
    ).one_or_none()
    if row is None:
        raise ContactNotFound(f"contact {contact_id} does not exist")
    return contact_from_row(row)


async def dropped_naming(
    conn: AsyncConnection, account_id: int, contact: Contact
) -> sa.ColumnElement[bool]:
    """Which of the account's dropped events name the contact: by its email, its external
    id or one of its anonymous aliases, each equal to the one the dropped event names
    (never text somewhere in its payload: `bob@ex.com` is not `mallory.bob@ex.com`)."""
    aliases = (
        await conn.scalars(
            sa.select(contact_aliases.c.alias).where(
                contact_aliases.c.account_id == account_id,
                contact_aliases.c.contact_id == contact.id,
            )
        )
    ).all()
    names: list[sa.ColumnElement[bool]] = []
    if contact.email:
        names.append(dropped_events.c.email == contact.email)
    if contact.external_id:
        names.append(dropped_events.c.external_id == contact.external_id)
    if aliases:
        names.append(dropped_events.c.anonymous_id.in_(aliases))
    return sa.and_(dropped_events.c.account_id == account_id, sa.or_(sa.false(), *names))


# The property names (top-level keys, cut to 255 characters, as the event writer records
# them) of an event row `e`; PostgreSQL refuses jsonb_object_keys on anything but an object.
_KEYS = {
    "postgresql": "jsonb_object_keys(CASE jsonb_typeof(e.properties) WHEN 'object' "
    "THEN e.properties ELSE '{}'::jsonb END) AS k(key)",
    "sqlite": "json_each(CASE json_type(e.properties) WHEN 'object' "
    "THEN e.properties ELSE '{}' END) AS k",
}
_CUT = {"postgresql": "left(k.key, 255)", "sqlite": "substr(k.key, 1, 255)"}
# Catalog rows named by the contact's events that no other contact's event names.
_FORGET_PROPERTIES = """
DELETE FROM {table}
WHERE account_id = :account_id
    AND ({scope}event_name, name) IN (
        SELECT {event_scope}e.name, {cut} FROM events AS e, {keys}
        WHERE e.account_id = :account_id AND e.contact_id = :contact_id)
    AND NOT EXISTS (
        SELECT 1 FROM events AS e, {keys}
        WHERE e.account_id = :account_id AND e.contact_id <> :contact_id
            AND e.name = {table}.event_name AND {cut} = {table}.name{same_list})"""


async def _forget_property_names(conn: AsyncConnection, account_id: int, contact_id: int) -> None:
    """Removes from the property catalog (per event name, and per list) the names only
    this contact's events brought in: a key can itself be personal data."""
    keys, cut = _KEYS[conn.dialect.name], _CUT[conn.dialect.name]
    for table, scope, same_list in (
        ("event_properties", "", ""),
        ("list_event_properties", "list_id, ", " AND e.list_id = list_event_properties.list_id"),
    ):
        statement = _FORGET_PROPERTIES.format(
            table=table,
            scope=scope,
            event_scope=scope.replace("list_id", "e.list_id"),
            keys=keys,
            cut=cut,
            same_list=same_list,
        )
        await conn.execute(sa.text(statement), {"account_id": account_id, "contact_id": contact_id})


async def erase_contact(db: Database, account_id: int, contact_id: int) -> None:
    """The right to erasure: delete_contact in a transaction of its own, then no copy of
    what it deleted left in SQLite's WAL."""
    await db.write(delete_contact, account_id, contact_id)
    await db.scrub()


async def delete_contact(conn: AsyncConnection, account_id: int, contact_id: int) -> None:
    """Erases the contact and everything held about it: events and their idempotency
    keys, counters, aliases, memberships, tags, automation runs, webhook deliveries of
    its events with their attempts, dropped events that name it, and property names
    only its events brought in."""
    contact = await get_contact(conn, account_id, contact_id)
    await conn.execute(
        dropped_events.delete().where(await dropped_naming(conn, account_id, contact))
    )
    await _forget_property_names(conn, account_id, contact_id)
    its_events = sa.select(events.c.id).where(
        events.c.account_id == account_id, events.c.contact_id == contact_id
    )
    for table in (event_message_ids, deliveries):
        await conn.execute(
            table.delete().where(table.c.account_id == account_id, table.c.event_id.in_(its_events))
        )
    await conn.execute(
        automation_runs.delete().where(
            automation_runs.c.account_id == account_id, automation_runs.c.contact_id == contact_id
        )
    )
    for table in (events, event_summaries, contact_aliases, list_members, contact_tags):
        await conn.execute(
            table.delete().where(table.c.account_id == account_id, table.c.contact_id == contact_id)
        )
    await conn.execute(
        contacts.delete().where(contacts.c.account_id == account_id, contacts.c.id == contact_id)
    )


async def identify(
    conn: AsyncConnection,
    account_id: int,
    anonymous_id: str,
    ref: ContactRef,
    *,
    credential: Credential,
    now: datetime,
    changes: Mapping[str, Any] | None = None,
) -> Contact | None:
    """Links an anonymous id to a contact (created if new, with `changes`; an existing
    one is changed as far as the credential may). Events and counters of the anonymous
    contact it named until now move to that contact, which then replaces it.

    For a secret key, an id already linked to another identified contact is a
    ContactConflict, and a contact named by an anonymous id nobody has ContactNotFound.
    A publishable key is answered the same whatever is held: the link is not made, is
    kept in the dropped events with the reason (`identity_conflict`, `unknown_contact`),
    and the contact is returned as if it were (None when there is none)."""
    found = (await resolve_contacts(conn, account_id, {ref: UnknownContact.REJECT}, now=now))[ref]
    created = isinstance(found, ContactNotFound)
    if isinstance(found, ContactNotFound):
        if credential.publishable and not ref.identified:
            await _refuse_link(
                conn,
                account_id,
                dropped.UNKNOWN_CONTACT,
                anonymous_id,
                ContactRef(anonymous_id=ref.anonymous_id),
                credential=credential,
                now=now,
            )
            return None
        target = await resolve_contact(
            conn, account_id, ref, UnknownContact.CREATE_IDENTIFIED, now=now
        )
    else:
        target = found
    current = await conn.scalar(
        sa.select(contact_aliases.c.contact_id).where(
            contact_aliases.c.account_id == account_id, contact_aliases.c.alias == anonymous_id
        )
    )
    if current is None:
        await conn.execute(
            contact_aliases.insert().values(
                account_id=account_id, alias=anonymous_id, contact_id=target, created_at=now
            )
        )
    elif current != target:
        source = await get_contact(conn, account_id, current)
        if not (source.email or source.external_id or source.wp_user_id):
            its_lists = await conn.scalars(
                sa.select(list_members.c.list_id).where(
                    list_members.c.account_id == account_id, list_members.c.contact_id == source.id
                )
            )
            list_ids = list(its_lists)
            await _merge_into(conn, account_id, source.id, target, now=now)
            await join_lists(
                conn, account_id, target, list_ids, created=created, credential=credential, now=now
            )
        elif credential.publishable:
            contact = await get_contact(conn, account_id, target)
            await _refuse_link(
                conn,
                account_id,
                dropped.IDENTITY_CONFLICT,
                anonymous_id,
                ContactRef(email=contact.email, external_id=contact.external_id),
                credential=credential,
                now=now,
            )
        else:
            raise ContactConflict("anonymous_id already belongs to another identified contact")
    if created:
        return await update_contact(conn, account_id, target, now=now, changes=changes or {})
    return await change_existing(
        conn, account_id, target, credential=credential, now=now, changes=changes or {}
    )


async def _refuse_link(
    conn: AsyncConnection,
    account_id: int,
    reason: str,
    anonymous_id: str,
    named: ContactRef,
    *,
    credential: Credential,
    now: datetime,
) -> None:
    """A publishable key's link of a visitor id to a contact, not made: kept for the
    account to see, named by both so that erasing either finds it."""
    await dropped.record(
        conn,
        account_id,
        source=credential.source,
        reason=reason,
        payload={
            "anonymous_id": anonymous_id,
            "contact": {
                name: value
                for name, value in (
                    ("email", named.email),
                    ("external_id", named.external_id),
                    ("anonymous_id", named.anonymous_id),
                )
                if value is not None
            },
        },
        naming=ContactRef(
            email=named.email, external_id=named.external_id, anonymous_id=anonymous_id
        ),
        now=now,
    )


@dataclass(frozen=True, slots=True)
class Visitor:
    """A browser or device as a visitor id, and the contact it belongs to."""

    contact_id: int
    visitor_id: str
    newly_identified: bool
    """The visitor id was linked to this contact just now (its history moved over)."""


async def identify_visitor(
    conn: AsyncConnection,
    account_id: int,
    *,
    email: str | None,
    external_id: str | None,
    visitor_id: str | None,
    new_visitor_id: str,
    credential: Credential,
    now: datetime,
    changes: Mapping[str, Any] | None = None,
    list_id: int | None = None,
) -> Visitor:
    """The contact with this email or external id (created if new; with both, the
    external id is given to the email's contact, as far as the credential may), linked
    to the visitor id and put on the list (`join_lists`). Without a visitor id, the
    contact's first alias is reused, or `new_visitor_id` becomes one; always the new one
    for a publishable key, which is never told the visitor id a contact has (it is
    answered as for an unknown one), nor whether a link it asked for was refused."""
    contact, created = await upsert_contact(
        conn,
        account_id,
        credential=credential,
        now=now,
        email=email,
        external_id=external_id,
        fields=changes,
    )
    if list_id is not None:
        await join_lists(
            conn, account_id, contact.id, [list_id], created=created, credential=credential, now=now
        )
    if visitor_id is None and credential.publishable:
        visitor_id = new_visitor_id
    if visitor_id is None:
        known = await conn.scalar(
            sa.select(contact_aliases.c.alias)
            .where(
                contact_aliases.c.account_id == account_id,
                contact_aliases.c.contact_id == contact.id,
            )
            .order_by(contact_aliases.c.id)
            .limit(1)
        )
        if known is not None:
            return Visitor(contact.id, known, newly_identified=False)
        visitor_id = new_visitor_id
    owner = await conn.scalar(
        sa.select(contact_aliases.c.contact_id).where(
            contact_aliases.c.account_id == account_id, contact_aliases.c.alias == visitor_id
        )
    )
    if owner == contact.id or (
        owner is not None
        and credential.publishable
        and await _link_refused_before(conn, account_id, visitor_id, contact)
    ):
        return Visitor(contact.id, visitor_id, newly_identified=False)
    await identify(
        conn, account_id, visitor_id, ContactRef(id=contact.id), credential=credential, now=now
    )
    return Visitor(contact.id, visitor_id, newly_identified=True)


async def _link_refused_before(
    conn: AsyncConnection, account_id: int, visitor_id: str, contact: Contact
) -> bool:
    """Whether linking the visitor id to the contact was refused to a publishable key
    before: it is answered from then on as a link that was made, so that asking again
    tells the key no more than the first refusal did."""
    found = await conn.scalar(
        sa.select(dropped_events.c.id)
        .where(
            dropped_events.c.account_id == account_id,
            dropped_events.c.anonymous_id == visitor_id,
            dropped_events.c.reason == dropped.IDENTITY_CONFLICT,
            dropped_events.c.email.is_not_distinct_from(contact.email),
            dropped_events.c.external_id.is_not_distinct_from(contact.external_id),
        )
        .limit(1)
    )
    return found is not None


# What the contact each naming of a group names already has, of all an identify could
# change: its external id, fields, the visitor id (the one given when it is this
# contact's, else its first) and list membership. A contact is named by its email, or
# by its external id when no email is given. Driver SQL: this runs in every group of
# the event writer that holds an Octeth event.
_NAMED = """
WITH named AS (
    SELECT n.*, c.id AS contact_id, c.external_id AS held_external_id, c.first_name,
        c.last_name
    FROM {input} JOIN contacts AS c ON c.account_id = n.account_id AND c.email = n.email
    UNION ALL
    SELECT n.*, c.id, c.external_id, c.first_name, c.last_name
    FROM {input} JOIN contacts AS c
        ON c.account_id = n.account_id AND c.external_id = n.external_id
    WHERE n.email IS NULL
)
SELECT position, contact_id, held_external_id, first_name, last_name,
    CASE WHEN visitor_id IS NULL THEN (
        SELECT alias FROM contact_aliases AS a
        WHERE a.account_id = named.account_id AND a.contact_id = named.contact_id
        ORDER BY a.id LIMIT 1
    ) ELSE (
        SELECT alias FROM contact_aliases AS a
        WHERE a.account_id = named.account_id AND a.alias = named.visitor_id
            AND a.contact_id = named.contact_id
    ) END AS alias,
    list_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM list_members AS m
        WHERE m.account_id = named.account_id AND m.list_id = named.list_id
            AND m.contact_id = named.contact_id
    ) AS member
FROM named"""
_NAMED_POSTGRESQL = _NAMED.format(
    input="unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[]) "
    "AS n(position, account_id, email, external_id, visitor_id, list_id)"
)
_NAMED_SQLITE = _NAMED.format(
    input="(SELECT value ->> 0 AS position, value ->> 1 AS account_id, value ->> 2 AS email, "
    "value ->> 3 AS external_id, value ->> 4 AS visitor_id, value ->> 5 AS list_id "
    "FROM json_each(?1)) AS n"
)
# The contact fields a naming may name (an identify's traits); any other sends the
# naming to the identify.
_NAMED_FIELDS = ("first_name", "last_name")


def visitors_as_named(
    conn: sa.Connection, named: Sequence[tuple[int, VisitorNaming]]
) -> list[Visitor | None]:
    """For each (account id, naming), what identify_visitor (then adding to the list)
    would answer when it would change nothing; None where it would write something.
    Reads only, in one statement for them all."""
    visitors: list[Visitor | None] = [None] * len(named)
    wanted = [
        (position, account_id, naming.email, naming.external_id, naming.visitor_id, naming.list_id)
        for position, (account_id, naming) in enumerate(named)
        if (naming.email is not None or naming.external_id is not None)
        and (naming.visitor_id is not None or not naming.publishable)
    ]
    if not wanted:
        return visitors
    if conn.dialect.name == "postgresql":
        found = conn.exec_driver_sql(
            _NAMED_POSTGRESQL, tuple(list(column) for column in zip(*wanted, strict=True))
        )
    else:
        found = conn.exec_driver_sql(_NAMED_SQLITE, (orjson.dumps(wanted).decode(),))
    for position, contact_id, external_id, first_name, last_name, alias, member in found:
        naming = named[position][1]
        held = dict(zip(_NAMED_FIELDS, (first_name, last_name), strict=True))
        # Each of email and external id, when given, must already be this contact's: the
        # other contact holding it (or nobody) means a change or a conflict, for the write.
        if (
            alias is None
            or (naming.external_id is not None and external_id != naming.external_id)
            or any(name not in held or held[name] != value for name, value in naming.fields)
            or (naming.list_id is not None and not member)
        ):
            continue
        visitors[position] = Visitor(contact_id, alias, newly_identified=False)
    return visitors


async def _merge_into(
    conn: AsyncConnection, account_id: int, source: int, target: int, *, now: datetime
) -> None:
    def owned_by_source(table: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(table.c.account_id == account_id, table.c.contact_id == source)

    await conn.execute(events.update().where(owned_by_source(events)).values(contact_id=target))
    await conn.execute(
        contact_aliases.update().where(owned_by_source(contact_aliases)).values(contact_id=target)
    )
    summaries = (
        await conn.execute(sa.select(event_summaries).where(owned_by_source(event_summaries)))
    ).all()
    if summaries:
        statement = upsert(conn, event_summaries)
        newer = statement.excluded.updated_at > event_summaries.c.updated_at
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["account_id", "contact_id", "name", "title", "series"],
                set_={
                    "counter": event_summaries.c.counter + statement.excluded.counter,
                    "last_value": sa.case(
                        (newer, statement.excluded.last_value), else_=event_summaries.c.last_value
                    ),
                    "provider": sa.case(
                        (newer, statement.excluded.provider), else_=event_summaries.c.provider
                    ),
                    "created_at": sa.case(
                        (
                            statement.excluded.created_at < event_summaries.c.created_at,
                            statement.excluded.created_at,
                        ),
                        else_=event_summaries.c.created_at,
                    ),
                    "updated_at": sa.case(
                        (newer, statement.excluded.updated_at), else_=event_summaries.c.updated_at
                    ),
                },
            ),
            [
                {
                    "account_id": account_id,
                    "contact_id": target,
                    "name": summary.name,
                    "title": summary.title,
                    "series": summary.series,
                    "counter": summary.counter,
                    "last_value": summary.last_value,
                    "provider": summary.provider,
                    "created_at": summary.created_at,
                    "updated_at": summary.updated_at,
                }
                for summary in summaries
            ],
        )
    # its lists are the caller's to join (join_lists): a credential may not be allowed to
    await delete_contact(conn, account_id, source)


async def tag_contact(
    conn: AsyncConnection,
    account_id: int,
    contact_id: int,
    tag_names: Iterable[str],
    *,
    now: datetime,
) -> None:
    """Adds tags, by name, creating the tags the account does not have yet."""
    await get_contact(conn, account_id, contact_id)
    for raw in tag_names:
        name = raw.strip()
        if not 1 <= len(name) <= 200:
            raise Invalid("tags", "names must be 1 to 200 characters")
        await conn.execute(
            upsert(conn, tags)
            .values(account_id=account_id, name=name, created_at=now)
            .on_conflict_do_nothing()
        )
        tag_id = await conn.scalar(
            sa.select(tags.c.id).where(tags.c.account_id == account_id, tags.c.name == name)
        )
        await conn.execute(
            upsert(conn, contact_tags)
            .values(account_id=account_id, tag_id=tag_id, contact_id=contact_id, created_at=now)
            .on_conflict_do_nothing()
        )


async def untag_contact(
    conn: AsyncConnection, account_id: int, contact_id: int, tag_names: Iterable[str]
) -> None:
    """Removes tags, by name; a tag the contact does not have is no error."""
    await get_contact(conn, account_id, contact_id)
    names = [name.strip() for name in tag_names]
    tag_ids = sa.select(tags.c.id).where(tags.c.account_id == account_id, tags.c.name.in_(names))
    await conn.execute(
        contact_tags.delete().where(
            contact_tags.c.account_id == account_id,
            contact_tags.c.contact_id == contact_id,
            contact_tags.c.tag_id.in_(tag_ids),
        )
    )


async def tag_names(conn: AsyncConnection, account_id: int, tag_ids: Iterable[int]) -> list[str]:
    """The names of these tag ids; Invalid when one is not a tag of the account."""
    wanted = set(tag_ids)
    found = dict(
        (
            await conn.execute(
                sa.select(tags.c.id, tags.c.name).where(
                    tags.c.account_id == account_id,
                    tags.c.id.in_([tag_id for tag_id in wanted if is_id(tag_id)]),
                )
            )
        ).all()
    )
    missing = wanted - set(found)
    if missing:
        raise Invalid("tags", f"has unknown tag ids: {sorted(missing)}")
    return [found[tag_id] for tag_id in sorted(wanted)]


async def create_list(
    conn: AsyncConnection, account_id: int, name: str, *, now: datetime
) -> ContactList:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name", "must be 1 to 200 characters")
    taken = await conn.scalar(
        sa.select(lists.c.id).where(lists.c.account_id == account_id, lists.c.name == name)
    )
    if taken is not None:
        raise ListConflict(f"a list named {name!r} already exists")
    row = (
        await conn.execute(
            lists.insert()
            .values(account_id=account_id, name=name, created_at=now)
            .returning(*lists.c)
        )
    ).one()
    return ContactList(row.id, row.name, row.created_at, 0)


def _lists_query(account_id: int) -> sa.Select[Any]:
    members = (
        sa.select(sa.func.count())
        .where(list_members.c.account_id == account_id, list_members.c.list_id == lists.c.id)
        .scalar_subquery()
    )
    return (
        sa.select(lists.c.id, lists.c.name, lists.c.created_at, members.label("member_count"))
        .where(lists.c.account_id == account_id)
        .order_by(lists.c.id)
    )


async def list_lists(conn: AsyncConnection, account_id: int) -> list[ContactList]:
    return [ContactList(*row) for row in await conn.execute(_lists_query(account_id))]


async def get_list(conn: AsyncConnection, account_id: int, list_id: int) -> ContactList:
    if not is_id(list_id):
        raise ListNotFound(f"list {list_id} does not exist")
    row = (await conn.execute(_lists_query(account_id).where(lists.c.id == list_id))).one_or_none()
    if row is None:
        raise ListNotFound(f"list {list_id} does not exist")
    return ContactList(*row)


async def delete_list(conn: AsyncConnection, account_id: int, list_id: int) -> None:
    """Deletes the list with its memberships; its events stay, on no list. Refused while
    an automation adds to or removes from it, or a segment names it."""
    found = await conn.scalar(
        sa.select(lists.c.id)
        .where(lists.c.account_id == account_id, lists.c.id == list_id)
        # an automation saved meanwhile checks the list under a share lock (automations
        # service), so it either sees the list gone or is seen below
        .with_for_update()
    )
    if found is None:
        raise ListNotFound(f"list {list_id} does not exist")
    users = await _list_users(conn, account_id, list_id)
    if users:
        raise ListInUse(
            f"list {list_id} is used by {', '.join(users)}; change or delete them first"
        )
    await conn.execute(
        events.update()
        .where(events.c.account_id == account_id, events.c.list_id == list_id)
        .values(list_id=None)
    )
    for table in (list_members, list_event_properties):
        await conn.execute(
            table.delete().where(table.c.account_id == account_id, table.c.list_id == list_id)
        )
    await conn.execute(
        lists.delete().where(lists.c.account_id == account_id, lists.c.id == list_id)
    )


async def _list_users(conn: AsyncConnection, account_id: int, list_id: int) -> list[str]:
    """The automations whose actions and the segments whose definitions name the list."""
    users = await automations_naming(
        conn,
        account_id,
        lambda _, actions: any(action.get("list_id") == list_id for action in actions),
    )
    found = await conn.execute(
        sa.select(segments.c.id, segments.c.name, segments.c.definition)
        .where(segments.c.account_id == account_id)
        .order_by(segments.c.id)
    )
    for segment_id, name, definition in found:
        if list_id in named_lists(definition):
            users.append(f"segment {segment_id} ({name})")
    return users


def list_exists(conn: sa.Connection, account_id: int, list_id: int) -> bool:
    """Whether the account has this list (without counting its members, as get_list does)."""
    if not is_id(list_id):
        return False
    found = conn.execute(
        sa.select(lists.c.id).where(lists.c.account_id == account_id, lists.c.id == list_id)
    )
    return found.first() is not None


def ingest_list(
    conn: sa.Connection, account_id: int, list_id: int, *, credential: Credential
) -> int | None:
    """The list an ingest request names, when the account has it. One it does not have
    is ListNotFound for a secret key; for a publishable key it is None, the request
    carried out without it: answering otherwise would let anyone holding the key find
    out which list ids exist. (Out-of-range ids are no list of any account.)"""
    if is_id(list_id) and list_exists(conn, account_id, list_id):
        return list_id
    if credential.publishable:
        return None
    raise ListNotFound(f"list {list_id} does not exist")


async def join_lists(
    conn: AsyncConnection,
    account_id: int,
    contact_id: int,
    list_ids: Iterable[int],
    *,
    created: bool,
    credential: Credential,
    now: datetime,
) -> None:
    """Puts the contact on these lists as the credential may: a secret key any contact,
    a publishable key only the contact its request has just created. Putting a contact
    that exists on a list subscribes it to the list's mail, a change of its consent: for
    a publishable key it is refused and kept in the dropped events (`change_refused`),
    like any other change it asks of a contact (`change_existing`)."""
    wanted = list(dict.fromkeys(list_ids))
    if created or not credential.publishable:
        for list_id in wanted:
            await add_to_list(conn, account_id, list_id, contact_id, now=now)
        return
    members = await conn.scalars(
        sa.select(list_members.c.list_id).where(
            list_members.c.account_id == account_id,
            list_members.c.contact_id == contact_id,
            list_members.c.list_id.in_(wanted),
        )
    )
    refused = sorted(set(wanted) - set(members))
    if refused:
        contact = await get_contact(conn, account_id, contact_id)
        await _record_refused(
            conn, account_id, contact, {"list_ids": refused}, credential=credential, now=now
        )


async def add_to_list(
    conn: AsyncConnection, account_id: int, list_id: int, contact_id: int, *, now: datetime
) -> bool:
    """Adds the contact to the list; False when it was already a member."""
    await get_list(conn, account_id, list_id)
    await get_contact(conn, account_id, contact_id)
    inserted = await conn.execute(
        upsert(conn, list_members)
        .values(account_id=account_id, list_id=list_id, contact_id=contact_id, created_at=now)
        .on_conflict_do_nothing()
    )
    return bool(inserted.rowcount)


async def remove_from_list(
    conn: AsyncConnection, account_id: int, list_id: int, contact_id: int
) -> None:
    await get_list(conn, account_id, list_id)
    await get_contact(conn, account_id, contact_id)
    deleted = await conn.execute(
        list_members.delete().where(
            list_members.c.account_id == account_id,
            list_members.c.list_id == list_id,
            list_members.c.contact_id == contact_id,
        )
    )
    if not deleted.rowcount:
        raise ContactNotFound(f"contact {contact_id} is not on list {list_id}")
