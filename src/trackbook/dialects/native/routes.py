"""Routes of the native API: parse, call one service function, render."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from trackbook.accounts import service as accounts
from trackbook.accounts.errors import Forbidden, Unauthenticated
from trackbook.accounts.service import Account
from trackbook.clock import iso
from trackbook.contacts import privacy
from trackbook.contacts import service as contacts
from trackbook.contacts.identity import normalise_email
from trackbook.contacts.service import Contact, ContactList, check_status
from trackbook.dialects.bodies import DepthCheckedRoute
from trackbook.dialects.cors import by_publishable_key, credential_of, ingest_account
from trackbook.dialects.native.errors import as_track_error, reply_for
from trackbook.dialects.native.models import (
    BATCH_BODY,
    AccountPatchIn,
    ContactPatchIn,
    ContactUpsertIn,
    IdentifyIn,
    ListIn,
    PreviewIn,
    SegmentIn,
    SegmentPatchIn,
    TrackIn,
    batch_events,
    json_content,
)
from trackbook.dialects.responses import JSON, ErrorReply
from trackbook.errors import DomainError, Invalid, NotFound
from trackbook.events import dropped, queries
from trackbook.events.errors import TrackingDisabled
from trackbook.events.model import Event, TrackResult
from trackbook.events.validation import parse_timestamp
from trackbook.ratelimits import key_identity
from trackbook.routing import PrefixRouter
from trackbook.segments import service as segments
from trackbook.segments.service import Segment
from trackbook.services import Services, services_of

router = PrefixRouter(
    prefix="/v1", dependencies=[Depends(json_content)], route_class=DepthCheckedRoute
)
ServicesDep = Annotated[Services, Depends(services_of)]


BEARER = "`Authorization: Bearer <API key>`"


def _bearer(authorization: str | None) -> str:
    """The key of `Authorization: Bearer <key>`; "" when there is none. A key sent bare
    or under another scheme is refused with how to send it, never used."""
    if not authorization or not authorization.strip():
        return ""
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated(
            f"the Authorization header must be Bearer followed by the API key: send {BEARER}"
        )
    return secret.strip()


async def current_account(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header(description=BEARER)] = None,
) -> Account:
    presented = _bearer(authorization)
    account = await services.auth.authenticate(presented)
    await services.limiter.check(
        request, "native", f"account:{account.id}", key_identity(presented)
    )
    return account


async def ingesting_account(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[
        str | None, Header(description=f"{BEARER}, the key secret or publishable")
    ] = None,
) -> Account:
    """As current_account, for the routes a publishable key may call too."""
    presented = _bearer(authorization)
    account = await ingest_account(request, services, presented)
    await services.limiter.check(
        request, "native", f"account:{account.id}", key_identity(presented)
    )
    return account


AccountDep = Annotated[Account, Depends(current_account)]
IngestAccountDep = Annotated[Account, Depends(ingesting_account)]


def _account_body(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "timezone": account.timezone,
        "tracking_enabled": account.tracking_enabled,
        "created_at": iso(account.created_at),
    }


def _contact_body(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "email": contact.email,
        "external_id": contact.external_id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "status": contact.status,
        "created_at": iso(contact.created_at),
        "updated_at": iso(contact.updated_at),
    }


def _list_body(contact_list: ContactList) -> dict[str, Any]:
    return {
        "id": contact_list.id,
        "name": contact_list.name,
        "member_count": contact_list.member_count,
        "created_at": iso(contact_list.created_at),
    }


def _event_body(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "contact_id": event.contact_id,
        "event": event.name,
        "title": event.title,
        "value": event.value,
        "properties": event.properties,
        "source": event.source,
        "message_id": event.message_id,
        "occurred_at": iso(event.occurred_at),
        "received_at": iso(event.received_at),
    }


def _tracked(result: TrackResult, *, publishable: bool = False) -> dict[str, Any]:
    if publishable:
        # a page holding the key learns that the event is stored, nothing of the contact
        return {"occurred_at": iso(result.occurred_at), "duplicate": result.duplicate}
    return {
        "id": result.event_id,
        "contact_id": result.contact_id,
        "occurred_at": iso(result.occurred_at),
        "duplicate": result.duplicate,
    }


NO_IDS_FOR_PUBLISHABLE = Forbidden(
    "a publishable key names a contact by email, external_id or anonymous_id, not by id"
)


def _check_contact_naming(request: Request, contact_id: int | None) -> None:
    """Contact ids are for secret keys: with a publishable key in a web page, answering
    to an id would tell anyone which ids exist."""
    if contact_id is not None and by_publishable_key(request):
        raise NO_IDS_FOR_PUBLISHABLE


@router.get("/account", tags=["account"])
async def get_account(account: AccountDep) -> JSON:
    return JSON(_account_body(account))


@router.patch("/account", tags=["account"])
async def patch_account(body: AccountPatchIn, account: AccountDep, services: ServicesDep) -> JSON:
    updated = await services.db.write(
        accounts.update_account,
        account.id,
        name=body.name,
        timezone=body.timezone,
        tracking_enabled=body.tracking_enabled,
    )
    services.auth.forget_account(account.id)
    return JSON(_account_body(updated))


@router.post("/track", status_code=201, tags=["events"])
async def track(
    request: Request, body: TrackIn, account: IngestAccountDep, services: ServicesDep
) -> JSON:
    """Records one event; answers after it is committed. Replaying a `message_id`
    answers 200 with the original event and `duplicate: true`. With a publishable key
    the contact cannot be named by id, and the answer holds no ids."""
    _check_contact_naming(request, body.contact.id)
    try:
        result = await services.events.track(account, body.command())
    except Invalid as error:
        raise as_track_error(error) from None
    publishable = by_publishable_key(request)
    return JSON(
        _tracked(result, publishable=publishable), status_code=200 if result.duplicate else 201
    )


@router.post("/batch", tags=["events"], openapi_extra=BATCH_BODY)
async def batch(request: Request, account: IngestAccountDep, services: ServicesDep) -> JSON:
    """Up to 1000 events; each is stored or refused on its own. With a publishable key
    the contact cannot be named by id, and the answers hold no ids."""
    events = batch_events(await request.body())
    publishable = by_publishable_key(request)
    limit = services.settings.batch_max_events
    if len(events) > limit:
        return JSON(
            {
                "error": {
                    "code": "too_many_events",
                    "message": f"a batch holds at most {limit} events",
                }
            },
            status_code=413,
        )
    commands: list[Any] = []
    for index, item in enumerate(events):
        try:
            parsed = item if isinstance(item, TrackIn) else TrackIn.model_validate(item)
            _check_contact_naming(request, parsed.contact.id)
            commands.append(parsed.command(f"events.{index}."))
        except ValidationError as error:
            commands.append(_item_invalid(error, index))
        except DomainError as error:
            commands.append(error)
    outcomes = await services.events.track_many(account, commands)
    results = [_batch_result(index, outcome, publishable) for index, outcome in enumerate(outcomes)]
    if all(isinstance(outcome, TrackingDisabled) for outcome in outcomes) and outcomes:
        raise TrackingDisabled
    return JSON({"results": results})


def _item_invalid(error: ValidationError, index: int) -> Invalid:
    first = error.errors()[0]
    field = ".".join(str(part) for part in (f"events.{index}", *first["loc"]))
    return Invalid(field, first["msg"].lower())


def _batch_result(
    index: int, outcome: TrackResult | Exception, publishable: bool
) -> dict[str, Any]:
    if isinstance(outcome, TrackResult):
        status = "duplicate" if outcome.duplicate else "created"
        return {"index": index, "status": status, **_tracked(outcome, publishable=publishable)}
    if isinstance(outcome, DomainError):
        reply = reply_for(outcome, f"events.{index}.")
    else:
        reply = ErrorReply(503, "storage_unavailable", "storage is unavailable; retry this event")
    error: dict[str, Any] = {"code": reply.code, "message": reply.message}
    if reply.field is not None:
        error["field"] = reply.field
    return {"index": index, "status": "error", "error": error}


@router.post("/identify", tags=["contacts"])
async def identify(
    request: Request, body: IdentifyIn, account: IngestAccountDep, services: ServicesDep
) -> JSON:
    """Links an anonymous id to a contact; its earlier events move to that contact.
    With a publishable key the contact cannot be named by id, and the answer is only
    `{"identified": true}`, also when the link is refused (kept in the dropped events)."""
    _check_contact_naming(request, body.contact.id)
    changes = _traits(body.traits or {})
    contact = await services.db.write(
        contacts.identify,
        account.id,
        body.anonymous_id,
        body.contact.ref(),
        credential=credential_of(request, "native"),
        now=services.clock.now(),
        changes=changes,
    )
    if by_publishable_key(request):
        return JSON({"identified": True})
    assert contact is not None  # noqa: S101 - None only for a publishable key
    return JSON(_contact_body(contact))


_TRAITS = ("first_name", "last_name", "status")


def _traits(traits: dict[str, Any]) -> dict[str, Any]:
    for name, value in traits.items():
        if name not in _TRAITS:
            raise Invalid(f"traits.{name}", f"is not stored; known traits: {', '.join(_TRAITS)}")
        if value is not None and not isinstance(value, str):
            raise Invalid(f"traits.{name}", "must be a string")
    if traits.get("status") is not None:
        check_status(traits["status"])
    return traits


@router.post("/contacts", status_code=201, tags=["contacts"])
async def upsert_contact(
    request: Request, body: ContactUpsertIn, account: AccountDep, services: ServicesDep
) -> JSON:
    """Creates the contact, or updates the one with this email or external_id (200)."""
    fields = body.model_dump(exclude_unset=True, exclude={"email", "external_id"})
    if "status" in fields:
        check_status(fields["status"] or "")
    contact, created = await services.db.write(
        contacts.upsert_contact,
        account.id,
        credential=credential_of(request, "native"),
        now=services.clock.now(),
        email=None if body.email is None else normalise_email(body.email),
        external_id=body.external_id,
        fields=fields,
    )
    return JSON(_contact_body(contact), status_code=201 if created else 200)


@router.get("/contacts", tags=["contacts"])
async def find_contacts(
    account: AccountDep,
    services: ServicesDep,
    email: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(description="next_cursor of the previous page")] = None,
) -> JSON:
    found = await services.db.query(
        contacts.find_contacts,
        account.id,
        email=None if email is None else email.strip().lower(),
        after_id=cursor,
        limit=limit + 1,
    )
    page = found[:limit]
    next_cursor = page[-1].id if len(found) > limit else None
    return JSON({"data": [_contact_body(c) for c in page], "next_cursor": next_cursor})


@router.get("/contacts/{contact_id}", tags=["contacts"])
async def get_contact(contact_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    details = await services.db.query(contacts.get_contact_details, account.id, contact_id)
    return JSON(
        {
            **_contact_body(details.contact),
            "aliases": details.aliases,
            "list_ids": details.list_ids,
            "tags": details.tags,
        }
    )


@router.patch("/contacts/{contact_id}", tags=["contacts"])
async def patch_contact(
    contact_id: int, body: ContactPatchIn, account: AccountDep, services: ServicesDep
) -> JSON:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("email") is not None:
        changes["email"] = normalise_email(changes["email"])
    if "status" in changes:
        check_status(changes["status"] or "")
    contact = await services.db.write(
        contacts.update_contact, account.id, contact_id, now=services.clock.now(), changes=changes
    )
    return JSON(_contact_body(contact))


@router.get("/contacts/{contact_id}/export", tags=["contacts"])
async def export_contact(contact_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    """Everything held about the contact, as one JSON document (before erasing it, say)."""
    return JSON(await services.db.query(privacy.export_contact, account.id, contact_id))


@router.delete("/contacts/{contact_id}", status_code=204, tags=["contacts"])
async def delete_contact(contact_id: int, account: AccountDep, services: ServicesDep) -> Response:
    """Deletes the contact and everything recorded about it."""
    await contacts.erase_contact(services.db, account.id, contact_id)
    return Response(status_code=204)


@router.get("/contacts/{contact_id}/events", tags=["events"])
async def contact_events(
    contact_id: int,
    account: AccountDep,
    services: ServicesDep,
    name: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> JSON:
    """The contact's events, newest first; pass `next_cursor` back for the next page."""
    await services.db.query(contacts.get_contact, account.id, contact_id)
    page = await services.db.query(
        queries.timeline,
        account.id,
        contact_id,
        name=name,
        since=_time(since, "since"),
        until=_time(until, "until"),
        limit=limit,
        cursor=cursor,
    )
    return JSON({"data": [_event_body(e) for e in page.events], "next_cursor": page.next_cursor})


def _time(value: str | None, field: str) -> datetime | None:
    return None if value is None else parse_timestamp(value, field)


@router.get("/contacts/{contact_id}/counters", tags=["events"])
async def contact_counters(contact_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    """One counter per (event, title) the contact performed: FluentCRM's view of events."""
    await services.db.query(contacts.get_contact, account.id, contact_id)
    rows = await services.db.query(queries.summaries, account.id, contact_id)
    return JSON(
        {
            "data": [
                {
                    "id": row.id,
                    "event": row.name,
                    "title": row.title,
                    "counter": row.counter,
                    "value": row.last_value,
                    "provider": row.provider,
                    "created_at": iso(row.created_at),
                    "updated_at": iso(row.updated_at),
                }
                for row in rows
            ]
        }
    )


@router.post("/lists", status_code=201, tags=["lists"])
async def create_list(body: ListIn, account: AccountDep, services: ServicesDep) -> JSON:
    created = await services.db.write(
        contacts.create_list, account.id, body.name, now=services.clock.now()
    )
    return JSON(_list_body(created), status_code=201)


@router.get("/lists", tags=["lists"])
async def list_lists(account: AccountDep, services: ServicesDep) -> JSON:
    found = await services.db.query(contacts.list_lists, account.id)
    return JSON({"data": [_list_body(item) for item in found]})


@router.get("/lists/{list_id}", tags=["lists"])
async def get_list(list_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    return JSON(_list_body(await services.db.query(contacts.get_list, account.id, list_id)))


@router.delete("/lists/{list_id}", status_code=204, tags=["lists"])
async def delete_list(list_id: int, account: AccountDep, services: ServicesDep) -> Response:
    """Deletes the list and its memberships; its events stay, on no list. Its id is never
    given again. Refused (409 `list_in_use`, naming them) while an automation adds to or
    removes from the list, or a segment's definition names it."""
    await services.db.write(contacts.delete_list, account.id, list_id)
    return Response(status_code=204)


@router.put("/lists/{list_id}/contacts/{contact_id}", tags=["lists"])
async def add_to_list(
    list_id: int, contact_id: int, account: AccountDep, services: ServicesDep
) -> JSON:
    """Adds the contact (201), or confirms it is already a member (200)."""
    added = await services.db.write(
        contacts.add_to_list, account.id, list_id, contact_id, now=services.clock.now()
    )
    return JSON(
        {"list_id": list_id, "contact_id": contact_id, "member": True},
        status_code=201 if added else 200,
    )


@router.delete("/lists/{list_id}/contacts/{contact_id}", status_code=204, tags=["lists"])
async def remove_from_list(
    list_id: int, contact_id: int, account: AccountDep, services: ServicesDep
) -> Response:
    await services.db.write(contacts.remove_from_list, account.id, list_id, contact_id)
    return Response(status_code=204)


@router.get("/event-names", tags=["events"])
async def event_names(account: AccountDep, services: ServicesDep) -> JSON:
    names = await services.db.query(queries.list_event_names, account.id)
    return JSON(
        {
            "data": [
                {
                    "name": item.name,
                    "count": item.count,
                    "first_seen": iso(item.first_seen),
                    "last_seen": iso(item.last_seen),
                }
                for item in names
            ]
        }
    )


@router.get("/event-names/{name}/properties", tags=["events"])
async def event_name_properties(name: str, account: AccountDep, services: ServicesDep) -> JSON:
    found = await services.db.query(queries.event_name_properties, account.id, name)
    if found is None:
        raise NotFound(f"no event named {name!r} has been tracked")
    return JSON({"name": name, "properties": found})


def _segment_body(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "name": segment.name,
        "definition": segment.definition,
        "created_at": iso(segment.created_at),
        "updated_at": iso(segment.updated_at),
    }


@router.post("/segments", status_code=201, tags=["segments"])
async def create_segment(body: SegmentIn, account: AccountDep, services: ServicesDep) -> JSON:
    """A named definition; an invalid one is a 422 naming the path of the bad node."""
    segment = await services.db.write(
        segments.create_segment, account.id, body.name, body.definition, now=services.clock.now()
    )
    return JSON(_segment_body(segment), status_code=201)


@router.get("/segments", tags=["segments"])
async def list_segments(account: AccountDep, services: ServicesDep) -> JSON:
    found = await services.db.query(segments.list_segments, account.id)
    return JSON({"data": [_segment_body(segment) for segment in found]})


@router.get("/segments/{segment_id}", tags=["segments"])
async def get_segment(segment_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    return JSON(
        _segment_body(await services.db.query(segments.get_segment, account.id, segment_id))
    )


@router.patch("/segments/{segment_id}", tags=["segments"])
async def patch_segment(
    segment_id: int, body: SegmentPatchIn, account: AccountDep, services: ServicesDep
) -> JSON:
    segment = await services.db.write(
        segments.update_segment,
        account.id,
        segment_id,
        now=services.clock.now(),
        name=body.name,
        definition=body.definition,
    )
    return JSON(_segment_body(segment))


@router.delete("/segments/{segment_id}", status_code=204, tags=["segments"])
async def delete_segment(segment_id: int, account: AccountDep, services: ServicesDep) -> Response:
    await services.db.write(segments.delete_segment, account.id, segment_id)
    return Response(status_code=204)


@router.get("/segments/{segment_id}/count", tags=["segments"])
async def count_segment(segment_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    segment = await services.db.query(segments.get_segment, account.id, segment_id)
    total = await services.db.query(segments.count_segment, segment, now=services.clock.now())
    return JSON({"segment_id": segment_id, "count": total})


@router.get("/segments/{segment_id}/contacts", tags=["segments"])
async def segment_contacts(
    segment_id: int,
    account: AccountDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(description="next_cursor of the previous page")] = None,
) -> JSON:
    """The segment's contacts by id; pass `next_cursor` back for the next page."""
    segment = await services.db.query(segments.get_segment, account.id, segment_id)
    found = await services.db.query(
        segments.segment_members,
        segment,
        now=services.clock.now(),
        after_id=cursor,
        limit=limit + 1,
    )
    page = found[:limit]
    next_cursor = page[-1].id if len(found) > limit else None
    return JSON({"data": [_contact_body(c) for c in page], "next_cursor": next_cursor})


@router.post("/segments/preview", tags=["segments"])
async def preview_segment(body: PreviewIn, account: AccountDep, services: ServicesDep) -> JSON:
    """A definition's count and first contacts, without saving it."""
    now = services.clock.now()
    total = await services.db.query(segments.count_members, account.id, body.definition, now=now)
    first = await services.db.query(
        segments.members, account.id, body.definition, now=now, limit=body.limit
    )
    return JSON({"count": total, "contacts": [_contact_body(c) for c in first]})


@router.get("/dropped-events", tags=["events"])
async def dropped_events(
    account: AccountDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[int | None, Query(description="next_cursor of the previous page")] = None,
) -> JSON:
    """Events a dialect acknowledged but did not store (ActiveCampaign's unknown contacts
    and tracking switched off), newest first, with the reason."""
    found = await services.db.query(dropped.newest, account.id, before_id=cursor, limit=limit + 1)
    page = found[:limit]
    return JSON(
        {
            "data": [
                {
                    "id": item.id,
                    "source": item.source,
                    "reason": item.reason,
                    "payload": item.payload,
                    "received_at": iso(item.received_at),
                }
                for item in page
            ],
            "next_cursor": page[-1].id if len(found) > limit else None,
        }
    )


bench_router = PrefixRouter(prefix="/v1/_bench", include_in_schema=False)


@bench_router.post("/validate", status_code=201)
async def validate_only(body: TrackIn, account: AccountDep, services: ServicesDep) -> JSON:
    """The reference for bench/ingest.py: the same parsing, auth and checks as
    /v1/track, and no storage. Mounted only with TRACKBOOK_BENCH_ROUTES=true."""
    try:
        pending = services.events.prepare(account, body.command())
    except Invalid as error:
        raise as_track_error(error) from None
    return JSON(
        {
            "id": 0,
            "contact_id": 0,
            "occurred_at": iso(pending.occurred_at),
            "duplicate": False,
        },
        status_code=201,
    )
