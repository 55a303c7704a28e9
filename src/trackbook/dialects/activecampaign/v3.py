"""ActiveCampaign's v3 API: event tracking settings, whitelist, tracking logs, contacts."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Header, Query
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from trackbook.accounts import service as accounts
from trackbook.accounts.service import Account
from trackbook.contacts import service as contacts
from trackbook.contacts.errors import ContactNotFound
from trackbook.contacts.identity import normalise_email
from trackbook.contacts.service import Contact
from trackbook.dialects.activecampaign.errors import FieldError, V3Route
from trackbook.dialects.cors import credential_of
from trackbook.dialects.responses import JSON
from trackbook.errors import Conflict, Invalid
from trackbook.events import catalog, queries
from trackbook.events.model import Event
from trackbook.routing import PrefixRouter
from trackbook.services import Services, services_of

PREFIX = "/api/3"
router = PrefixRouter(prefix=PREFIX, tags=["ActiveCampaign dialect"], route_class=V3Route)
ServicesDep = Annotated[Services, Depends(services_of)]


async def api_token(
    request: Request,
    services: ServicesDep,
    api_token: Annotated[str | None, Header(alias="Api-Token")] = None,
) -> Account:
    account = await services.auth.authenticate(api_token)
    await services.limiter.check(request, "activecampaign", f"account:{account.id}")
    return account


AccountDep = Annotated[Account, Depends(api_token)]


def _time(moment: datetime, account: Account) -> str:
    """ISO 8601 with the account's offset, to the second, as ActiveCampaign sends it."""
    return moment.astimezone(ZoneInfo(account.timezone)).replace(microsecond=0).isoformat()


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


class Switch(BaseModel):
    enabled: bool


class EventTrackingIn(BaseModel):
    eventTracking: Switch  # noqa: N815 - ActiveCampaign's field name


@router.get("/eventTracking")
async def get_event_tracking(account: AccountDep) -> JSON:
    return JSON({"eventTracking": {"enabled": account.tracking_enabled}})


@router.post("/eventTracking")
@router.put("/eventTracking")
async def set_event_tracking(
    body: EventTrackingIn, account: AccountDep, services: ServicesDep
) -> JSON:
    """The account's one tracking switch, which every dialect reads."""
    updated = await services.db.write(
        accounts.update_account, account.id, tracking_enabled=body.eventTracking.enabled
    )
    services.auth.forget_account(account.id)
    return JSON({"eventTracking": {"enabled": updated.tracking_enabled}})


class NameIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = None


class WhitelistIn(BaseModel):
    eventTrackingEvent: NameIn  # noqa: N815 - ActiveCampaign's field name


@router.post("/eventTrackingEvents", status_code=201)
async def whitelist_event(body: WhitelistIn, account: AccountDep, services: ServicesDep) -> JSON:
    name = (body.eventTrackingEvent.name or "").strip()
    if not name:
        raise FieldError("The event name can not be empty.", "field_missing", "name")
    try:
        await services.db.write(catalog.whitelist, account.id, name, now=services.clock.now())
    except Conflict:
        raise FieldError("The event name already exists.", "duplicate", "name") from None
    except Invalid as error:
        raise FieldError(error.message, "field_invalid", "name") from None
    return JSON({"eventTrackingEvent": {"name": name}}, status_code=201)


@router.get("/eventTrackingEvents")
async def list_whitelist(
    account: AccountDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSON:
    total, names = await services.db.query(
        catalog.whitelisted, account.id, offset=offset, limit=limit
    )
    return JSON({"eventTrackingEvents": [{"name": n} for n in names], "meta": {"total": total}})


@router.delete("/eventTrackingEvents/{name:path}")
async def unwhitelist_event(name: str, account: AccountDep, services: ServicesDep) -> JSON:
    """Removes the name from the whitelist; events already logged under it stay."""
    await services.db.write(catalog.unwhitelist, account.id, name)
    return JSON({})


def _tracking_log(event: Event, account: Account, base: str) -> dict[str, Any]:
    # a stable digest of what identifies the log, in the shape ActiveCampaign's has
    digest = hashlib.sha1(
        f"{account.id}:{event.id}:{event.name}:{event.occurred_at.isoformat()}".encode(),
        usedforsecurity=False,
    ).hexdigest()
    return {
        "subscriberid": str(event.contact_id),
        "type": event.name,
        "value": event.value,
        "tstamp": _time(event.occurred_at, account),
        "hash": digest,
        "links": {"contact": f"{base}/trackingLogs/{event.id}/contact"},
        "id": str(event.id),
        "contact": str(event.contact_id),
    }


def _activity(event: Event, account: Account, base: str) -> dict[str, Any]:
    """Each tracking log mirrored as a contact activity, under the same id."""
    link = f"{base}/activities/{event.id}"
    return {
        "tstamp": _time(event.occurred_at, account),
        "subscriberid": str(event.contact_id),
        "reference_type": "TrackingLog",
        "reference_id": str(event.id),
        "reference_action": event.name,
        "jsonData": None,
        "userid": "0",
        "permission": "",
        "referenceModelName": "tracking-log",
        "reference": {"type": "tracking-log", "id": str(event.id)},
        "links": {
            "user": f"{link}/user",
            "recipients": f"{link}/recipients",
            "reference": f"{link}/reference",
            "notes": f"{link}/notes",
        },
        "id": str(event.id),
        "user": None,
    }


async def _contact_in_path(services: Services, account: Account, contact_id: int) -> Contact:
    try:
        return await services.db.query(contacts.get_contact, account.id, contact_id)
    except ContactNotFound:
        raise ContactNotFound(f"No Result found for Subscriber with id {contact_id}") from None


@router.get("/contacts/{contact_id}/trackingLogs")
async def tracking_logs(
    contact_id: int,
    request: Request,
    account: AccountDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSON:
    await _contact_in_path(services, account, contact_id)
    _, found = await services.db.query(
        queries.events_page, account.id, contact_id, offset=offset, limit=limit
    )
    base = _base(request)
    return JSON({"trackingLogs": [_tracking_log(e, account, base) for e in found]})


@router.get("/trackingLogs/{log_id}/contact")
async def tracking_log_contact(
    log_id: int, request: Request, account: AccountDep, services: ServicesDep
) -> JSON:
    event = await services.db.query(queries.get_event, account.id, log_id)
    contact = await _contact_in_path(services, account, event.contact_id)
    return JSON({"contact": _contact_body(contact, account, _base(request))})


@router.get("/activities")
async def activities(
    request: Request,
    account: AccountDep,
    services: ServicesDep,
    contact: int,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSON:
    await _contact_in_path(services, account, contact)
    total, found = await services.db.query(
        queries.events_page, account.id, contact, offset=offset, limit=limit
    )
    base = _base(request)
    return JSON(
        {
            "trackingLogs": [_tracking_log(e, account, base) for e in found],
            "activities": [_activity(e, account, base) for e in found],
            "meta": {"total": str(total)},
        }
    )


def _contact_body(contact: Contact, account: Account, base: str) -> dict[str, Any]:
    link = f"{base}/contacts/{contact.id}"
    return {
        "email": contact.email or "",
        "phone": contact.phone or "",
        "firstName": contact.first_name or "",
        "lastName": contact.last_name or "",
        "orgid": "0",
        "cdate": _time(contact.created_at, account),
        "udate": _time(contact.updated_at, account),
        "deleted": "0",
        "links": {
            "trackingLogs": f"{link}/trackingLogs",
            "contactLists": f"{link}/contactLists",
            "contactTags": f"{link}/contactTags",
        },
        "id": str(contact.id),
    }


class ContactFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    email: str | None = None
    firstName: str | None = None  # noqa: N815 - ActiveCampaign's field name
    lastName: str | None = None  # noqa: N815
    phone: str | None = None

    def fields(self) -> dict[str, Any]:
        given = self.model_dump(exclude_unset=True, exclude={"email"})
        names = {"firstName": "first_name", "lastName": "last_name", "phone": "phone"}
        return {names[key]: (value or None) for key, value in given.items()}

    def checked_email(self) -> str:
        if not self.email or not self.email.strip():
            raise FieldError("Email address is required.", "field_missing", "email")
        try:
            return normalise_email(self.email)
        except Invalid:
            raise FieldError("Email address is not valid.", "email_invalid", "email") from None


class ContactIn(BaseModel):
    contact: ContactFields


@router.post("/contacts", status_code=201)
async def create_contact(
    body: ContactIn, request: Request, account: AccountDep, services: ServicesDep
) -> JSON:
    contact = await services.db.write(
        contacts.create_contact,
        account.id,
        now=services.clock.now(),
        email=body.contact.checked_email(),
        fields=body.contact.fields(),
    )
    return JSON({"contact": _contact_body(contact, account, _base(request))}, status_code=201)


@router.post("/contact/sync")
async def sync_contact(
    body: ContactIn, request: Request, account: AccountDep, services: ServicesDep
) -> JSON:
    """Creates the contact (201) or updates the one with this email (200)."""
    contact, created = await services.db.write(
        contacts.upsert_contact,
        account.id,
        credential=credential_of(request, "activecampaign"),
        now=services.clock.now(),
        email=body.contact.checked_email(),
        fields=body.contact.fields(),
    )
    return JSON(
        {"contact": _contact_body(contact, account, _base(request))},
        status_code=201 if created else 200,
    )


@router.get("/contacts/{contact_id}")
async def get_contact(
    contact_id: int, request: Request, account: AccountDep, services: ServicesDep
) -> JSON:
    contact = await _contact_in_path(services, account, contact_id)
    return JSON({"contact": _contact_body(contact, account, _base(request))})


@router.get("/contacts")
async def find_contacts(
    request: Request,
    account: AccountDep,
    services: ServicesDep,
    email: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSON:
    if email is not None:
        found = await services.db.query(
            contacts.find_contacts, account.id, email=email.strip().lower(), limit=1
        )
        total = len(found)
    else:
        total, found = await services.db.query(
            contacts.search_contacts, account.id, offset=offset, limit=limit
        )
    base = _base(request)
    return JSON(
        {
            "contacts": [_contact_body(c, account, base) for c in found],
            "meta": {"total": str(total)},
        }
    )


@router.put("/contacts/{contact_id}")
async def update_contact(
    contact_id: int, body: ContactIn, request: Request, account: AccountDep, services: ServicesDep
) -> JSON:
    await _contact_in_path(services, account, contact_id)
    changes = body.contact.fields()
    if body.contact.email is not None:
        changes["email"] = body.contact.checked_email()
    contact = await services.db.write(
        contacts.update_contact, account.id, contact_id, now=services.clock.now(), changes=changes
    )
    return JSON({"contact": _contact_body(contact, account, _base(request))})


@router.delete("/contacts/{contact_id}")
async def delete_contact(contact_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    await _contact_in_path(services, account, contact_id)
    await contacts.erase_contact(services.db, account.id, contact_id)
    return JSON({})
