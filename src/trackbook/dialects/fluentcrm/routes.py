"""FluentCRM's event tracking and the part of its contact API an integration needs first."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import Depends, Header
from starlette.requests import Request

from trackbook.accounts.service import Account
from trackbook.contacts import service as contacts
from trackbook.contacts.errors import ContactNotFound
from trackbook.contacts.identity import ContactRef, UnknownContact, is_id, normalise_email
from trackbook.contacts.service import STATUSES, Contact
from trackbook.dialects.fluentcrm import rest_route
from trackbook.dialects.fluentcrm.errors import FieldErrors
from trackbook.dialects.fluentcrm.params import (
    basic_password,
    php_int,
    php_truthy,
    sanitize_text,
)
from trackbook.dialects.params import merged_params
from trackbook.dialects.responses import JSON
from trackbook.errors import Invalid, NotFound
from trackbook.events import queries
from trackbook.events.errors import TrackingDisabled
from trackbook.events.model import TrackCommand
from trackbook.ratelimits import key_identity
from trackbook.routing import PrefixRouter
from trackbook.services import Services, services_of

PREFIX = "/wp-json/fluent-crm/v2"
router = PrefixRouter(prefix=PREFIX, tags=["FluentCRM dialect"])
ServicesDep = Annotated[Services, Depends(services_of)]
# FluentCRM's column width for event_key and title; longer values are cut, not refused.
KEY_LENGTH = 192
PER_PAGE = 15


async def application_password(
    request: Request, services: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> Account:
    """HTTP Basic as WordPress application passwords: any user name, the password is
    a Trackbook API key."""
    presented = basic_password(authorization)
    account = await services.auth.authenticate(presented)
    await services.limiter.check(
        request, "fluentcrm", f"account:{account.id}", key_identity(presented or "")
    )
    return account


AccountDep = Annotated[Account, Depends(application_password)]


def _wp_time(moment: datetime, account: Account) -> str:
    return moment.astimezone(ZoneInfo(account.timezone)).strftime("%Y-%m-%d %H:%M:%S")


def _required(params: dict[str, Any], *fields: str) -> dict[str, str]:
    values = {field: sanitize_text(params.get(field)) for field in fields}
    missing = {
        field: {"required": f"The {field} field is required."}
        for field, value in values.items()
        if not value
    }
    if missing:
        raise FieldErrors(missing)
    return values


def _subscriber(params: dict[str, Any]) -> ContactRef:
    """FluentCRM's lookup order: subscriber_id, else email, else user_id. What names no
    contact Trackbook could have (not a number, an id beyond 64 bits, a bad email) is a
    subscriber not found, as an unknown one is."""
    try:
        subscriber_id = params.get("subscriber_id")
        if subscriber_id not in (None, ""):
            return ContactRef(id=php_int(subscriber_id) or 0)
        email = params.get("email")
        if email not in (None, ""):
            return ContactRef(email=normalise_email(str(email)))
        user_id = params.get("user_id")
        if user_id not in (None, ""):
            return ContactRef(wp_user_id=php_int(user_id) or 0)
    except Invalid:
        raise ContactNotFound("Subscriber not found") from None
    # FluentCRM falls back to the contact of the logged-in WordPress user; an API key
    # is no WordPress user, so there is none (capture 15).
    raise ContactNotFound("Current Subscriber could not be found")


async def _subscriber_in_path(services: Services, account: Account, subscriber_id: int) -> Contact:
    """A contact named by the URL: unknown is a 404 there, not the 422 of track-event."""
    try:
        return await services.db.query(contacts.get_contact, account.id, subscriber_id)
    except ContactNotFound as error:
        raise NotFound(error.message) from None


def _stored_value(value: Any) -> str:
    """The value as text; an object or array sent as JSON is kept as JSON text."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


@router.post("/subscribers/track-event")
async def track_event(request: Request, account: AccountDep, services: ServicesDep) -> JSON:
    """Counts the event in the contact's (event_key, title) counter; answers with the
    counter's id."""
    if not account.tracking_enabled:
        raise TrackingDisabled
    params = await merged_params(request)
    fields = _required(params, "event_key", "title")
    contact = _subscriber(params)
    command = TrackCommand(
        name=fields["event_key"][:KEY_LENGTH],
        title=fields["title"][:KEY_LENGTH],
        value=_stored_value(params.get("value")),
        provider=sanitize_text(params.get("provider"))[:64] or "custom",
        contact=contact,
        source="fluentcrm",
        unknown_contact=UnknownContact.REJECT,
        repeatable=php_truthy(params.get("repeatable", True)),
    )
    try:
        result = await services.events.track(account, command)
    except ContactNotFound:
        raise ContactNotFound("Subscriber not found") from None
    return JSON({"message": "Event has been tracked", "id": result.summary_id})


def _page_params(params: dict[str, Any]) -> tuple[int, int]:
    page = max(php_int(params.get("page")) or 1, 1)
    per_page = min(max(php_int(params.get("per_page")) or PER_PAGE, 1), 500)
    return page, per_page


def _paginated(
    request: Request, total: int, page: int, per_page: int, data: list[dict[str, Any]]
) -> dict[str, Any]:
    """Laravel's paginator as FluentCRM sends it; page links carry only `page` (capture 24),
    and have no path at all when the request came as `?rest_route=` (capture 31)."""
    path = "" if request.scope.get(rest_route.REWRITTEN) else request.url.path
    last_page = max(math.ceil(total / per_page), 1)
    first = (page - 1) * per_page + 1
    return {
        "total": total,
        "per_page": per_page,
        "current_page": page,
        "last_page": last_page,
        "next_page_url": f"{path}?page={page + 1}" if page < last_page else None,
        "prev_page_url": f"{path}?page={page - 1}" if page > 1 else None,
        "from": first if data else None,
        "to": first + len(data) - 1 if data else None,
        "data": data,
    }


@router.get("/subscribers/{subscriber_id}/tracking-events")
async def tracking_events(
    subscriber_id: int, request: Request, account: AccountDep, services: ServicesDep
) -> JSON:
    """The contact's counters, newest first, 15 a page."""
    if not account.tracking_enabled:
        raise TrackingDisabled
    page, per_page = _page_params(dict(request.query_params))
    await _subscriber_in_path(services, account, subscriber_id)
    total, rows = await services.db.query(
        queries.summaries_page,
        account.id,
        subscriber_id,
        offset=(page - 1) * per_page,
        limit=per_page,
    )
    data = [
        {
            "id": row.id,
            "subscriber_id": str(row.contact_id),
            "counter": str(row.counter),
            # the WordPress user who tracked it; an API key stands for no user
            "created_by": "0",
            "provider": row.provider,
            "event_key": row.name,
            "title": row.title,
            "value": row.last_value or "",
            "created_at": _wp_time(row.created_at, account),
            "updated_at": _wp_time(row.updated_at, account),
        }
        for row in rows
    ]
    return JSON({"events": _paginated(request, total, page, per_page, data)})


def _contact_body(contact: Contact, account: Account) -> dict[str, Any]:
    email_hash = hashlib.md5((contact.email or "").encode(), usedforsecurity=False).hexdigest()
    full_name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
    return {
        "id": contact.id,
        "user_id": contact.wp_user_id,
        "hash": email_hash,
        "contact_owner": None,
        "company_id": None,
        "prefix": None,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email,
        "timezone": None,
        "address_line_1": None,
        "address_line_2": None,
        "postal_code": None,
        "city": None,
        "state": None,
        "country": None,
        "ip": None,
        "latitude": None,
        "longitude": None,
        "total_points": "0",
        "life_time_value": "0",
        "phone": None,
        "status": contact.status,
        "contact_type": "lead",
        "source": None,
        "avatar": None,
        "date_of_birth": None,
        "created_at": _wp_time(contact.created_at, account),
        "last_activity": None,
        "updated_at": _wp_time(contact.updated_at, account),
        "full_name": full_name,
        "photo": f"https://www.gravatar.com/avatar/{email_hash}?s=128&d=mp",
    }


def _ids(value: Any, field: str) -> list[int]:
    items = value if isinstance(value, list) else [value]
    ids = [php_int(item) for item in items if item not in (None, "")]
    if any(item is None for item in ids):
        raise FieldErrors({field: {"array": f"The {field} must be a list of ids."}})
    return [item for item in ids if item is not None]


@router.post("/subscribers")
async def create_subscriber(request: Request, account: AccountDep, services: ServicesDep) -> JSON:
    """Creates a contact: email required; first_name, last_name, status, user_id, lists
    (ids) and tags (ids of existing tags, or names)."""
    params = await merged_params(request)
    raw_email = sanitize_text(params.get("email"))
    if not raw_email:
        raise FieldErrors({"email": {"required": "The email field is required."}})
    try:
        email = normalise_email(raw_email)
    except Invalid:
        raise FieldErrors(
            {"email": {"email": "The email must be a valid email address."}}
        ) from None
    status = sanitize_text(params.get("status")) or "subscribed"
    if status not in STATUSES:
        raise FieldErrors({"status": {"in": "The selected status is invalid."}})
    fields: dict[str, Any] = {"status": status}
    for name in ("first_name", "last_name"):
        if params.get(name) is not None:
            fields[name] = sanitize_text(params[name])[:200] or None
    if params.get("user_id") not in (None, ""):
        fields["wp_user_id"] = php_int(params["user_id"])
        if fields["wp_user_id"] is None or not is_id(fields["wp_user_id"]):
            raise FieldErrors({"user_id": {"integer": "The user_id must be an integer."}})
    list_ids = _ids(params.get("lists", []), "lists")
    raw_tags = params.get("tags", [])
    tags = raw_tags if isinstance(raw_tags, list) else [raw_tags]
    contact = await services.db.write(
        contacts.create_contact,
        account.id,
        email=email,
        fields=fields,
        list_ids=list_ids,
        tag_ids=[tag for tag in (php_int(t) for t in tags) if tag is not None],
        tags=[str(t) for t in tags if php_int(t) is None and str(t).strip()],
        now=services.clock.now(),
    )
    return JSON(
        {
            "message": "Successfully added the subscriber.",
            "contact": _contact_body(contact, account),
            "action_type": "created",
        }
    )


@router.get("/subscribers/{subscriber_id}")
async def get_subscriber(subscriber_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    contact = await _subscriber_in_path(services, account, subscriber_id)
    return JSON({"subscriber": _contact_body(contact, account)})


@router.get("/subscribers")
async def list_subscribers(request: Request, account: AccountDep, services: ServicesDep) -> JSON:
    """Contacts newest first; `search` matches email, first or last name."""
    params = dict(request.query_params)
    page, per_page = _page_params(params)
    total, found = await services.db.query(
        contacts.search_contacts,
        account.id,
        search=params.get("search") or None,
        offset=(page - 1) * per_page,
        limit=per_page,
    )
    data = [_contact_body(contact, account) for contact in found]
    return JSON({"subscribers": _paginated(request, total, page, per_page, data)})
