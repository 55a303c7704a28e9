"""Octeth's event.track and website_events.properties, at /api/v1 and legacy /api.php."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header
from starlette.requests import Request

from trackbook.accounts.service import Account
from trackbook.contacts import service as contacts
from trackbook.contacts.errors import ListNotFound
from trackbook.contacts.identity import (
    ContactRef,
    Credential,
    UnknownContact,
    VisitorNaming,
    is_id,
    normalise_email,
)
from trackbook.dialects.cors import credential_of, ingest_account
from trackbook.dialects.octeth.errors import MALFORMED, UNKNOWN_COMMAND, OctethErrors
from trackbook.dialects.params import merged_params
from trackbook.dialects.responses import JSON
from trackbook.errors import Invalid, StorageUnavailable
from trackbook.events import dropped, queries
from trackbook.events.errors import TrackingDisabled
from trackbook.events.model import TrackCommand, TrackResult
from trackbook.ratelimits import key_identity
from trackbook.routing import PrefixRouter
from trackbook.services import Services, services_of

router = PrefixRouter(tags=["Octeth dialect"])
SOURCE = "octeth"
ServicesDep = Annotated[Services, Depends(services_of)]
CONVERSION_PROPERTIES = (
    (8, "conversion-id"),
    (9, "conversion-name"),
    (10, "conversion-value"),
)


async def octeth_params(request: Request) -> dict[str, Any]:
    """Octeth's parameter names are case-insensitive: every key lower-cased."""
    return {key.lower(): value for key, value in (await merged_params(request)).items()}


ParamsDep = Annotated[dict[str, Any], Depends(octeth_params)]
PROPERTIES = "website_events.properties"


async def api_key(
    request: Request,
    params: ParamsDep,
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Account:
    """The `APIKey` parameter, or `Authorization: Bearer <key>`; then Octeth's limits:
    event.track and website_events.properties each have their own. A publishable key
    may only event.track."""
    scheme, _, bearer = (authorization or "").partition(" ")
    presented = params.get("apikey") or (bearer.strip() if scheme.lower() == "bearer" else None)
    secret = presented if isinstance(presented, str) else None
    path = request.scope["path"]
    default = "" if path == "/api.php" else "event.track"
    command = (_text(params.get("command")) or default).lower()
    reading = path.endswith(PROPERTIES) or command == PROPERTIES
    if not reading and command == "event.track":
        account = await ingest_account(request, services, secret)
    else:
        account = await services.auth.authenticate(secret)
    await services.limiter.check(
        request,
        "octeth_properties" if reading else "octeth_track",
        f"account:{account.id}",
        key_identity(secret or ""),
    )
    return account


AccountDep = Annotated[Account, Depends(api_key)]


def _properties(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise OctethErrors([(MALFORMED, "Properties is not valid JSON")], 400) from None
    if not isinstance(raw, dict):
        raise OctethErrors([(MALFORMED, "Properties must be an object")], 400)
    return raw


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _integer(raw: Any) -> int | None:
    """An integer or a string of digits; `1.7`, `"1.7"`, `true` and the rest are none."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        return int(raw.strip())
    return None


async def _list_exists(list_id: int, account: Account, services: Services) -> bool:
    return await services.db.run_query(contacts.list_exists, account.id, list_id)


_TRAITS = {
    "first_name": "first_name",
    "firstname": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
}


def _traits(properties: dict[str, Any]) -> dict[str, str]:
    """Contact fields among an identify's properties ($-prefixed or not)."""
    traits: dict[str, str] = {}
    for key, value in properties.items():
        field = _TRAITS.get(key.lstrip("$").lower())
        if field is not None and isinstance(value, str) and value.strip():
            traits[field] = value.strip()[:200]
    return traits


@dataclass(frozen=True, slots=True)
class _Checked:
    event: str
    list_id: int | None
    """A ListID that may name a list of the account: whether it does is looked up
    only where the writer's check of the visitor cannot answer (`_check_list`)."""
    email: str | None
    properties: dict[str, Any]
    ignored_list: int | None = None
    """A publishable key's ListID that names no list of the account: left out, and
    answered as one that does (`contacts.ingest_list`)."""


async def _check(
    params: dict[str, Any], account: Account, services: Services, credential: Credential
) -> _Checked:
    """Octeth's validation: every detected error listed at once. Whether a list exists
    is never an error for a publishable key."""
    errors: list[tuple[int, str]] = []
    event = _text(params.get("event"))
    if event is None:
        errors.append((5, "Missing event parameter"))
    list_error_at = len(errors)
    list_id, ignored_list = _list_param(params, credential)
    if list_id is None and ignored_list is None and params.get("listid") not in (None, ""):
        errors.append((4, "Invalid ListID parameter"))
    email = _text(params.get("email"))
    if email is not None:
        try:
            email = normalise_email(email)
        except Invalid:
            errors.append((7, "Invalid email parameter"))
    properties = _properties(params.get("properties"))
    if event == "conversion":
        for code, name in CONVERSION_PROPERTIES:
            if properties.get(name) in (None, ""):
                errors.append((code, f"Missing {name} event property (for conversion events)"))
    if errors or event is None:
        if (
            list_id is not None
            and not credential.publishable
            and not await _list_exists(list_id, account, services)
        ):
            errors.insert(list_error_at, (4, "Invalid ListID parameter"))
        raise OctethErrors(errors)
    return _Checked(event, list_id, email, properties, ignored_list)


def _list_param(params: dict[str, Any], credential: Credential) -> tuple[int | None, int | None]:
    """(list id, ignored list id) of the ListID parameter; (None, None) when there is
    none or it is no number."""
    if params.get("listid") in (None, ""):
        return None, None
    list_id = _integer(params["listid"])
    if list_id is None or is_id(list_id):
        return list_id, None
    # no list has this id: a secret key is told so (code 4), a publishable key has it
    # ignored, as any list the account does not have (contacts.ingest_list)
    return None, (list_id if credential.publishable else None)


async def _check_list(
    checked: _Checked, account: Account, services: Services, credential: Credential
) -> _Checked:
    """The request with its ListID looked up: code 4 when it names no list, or for a
    publishable key without it."""
    if checked.list_id is None:
        return checked
    try:
        list_id = await services.db.run_query(
            contacts.ingest_list, account.id, checked.list_id, credential=credential
        )
    except ListNotFound:
        raise OctethErrors([(4, "Invalid ListID parameter")]) from None
    if list_id is None:
        return replace(checked, list_id=None, ignored_list=checked.list_id)
    return checked


async def track(
    params: dict[str, Any], account: Account, services: Services, credential: Credential
) -> JSON:
    """event.track: validate, link the visitor to the contact it names, store."""
    checked = await _check(params, account, services, credential)
    external_id = _text(params.get("id"))
    visitor_id = _text(params.get("uuid"))
    event, email, properties = checked.event, checked.email, checked.properties
    is_test = properties.get("isTest") is True or properties.get("isTest") == "true"
    if email is None or is_test or not account.tracking_enabled:
        checked = await _check_list(checked, account, services, credential)
    if is_test:
        # Octeth answers a test event as a real one and stores nothing.
        return _success(visitor_id or str(uuid.uuid4()), external_id, event == "identify")
    if not account.tracking_enabled:
        raise TrackingDisabled

    identified = False
    if email is not None or external_id is not None:
        traits = _traits(properties) if event == "identify" else {}
        naming = VisitorNaming(
            email,
            external_id,
            visitor_id,
            checked.list_id if email is not None else None,
            tuple(traits.items()),
            publishable=credential.publishable,
        )
        # Nearly always the visitor is already as the request names it: the event writer
        # checks that in the transaction that stores the event, with the other events
        # of its group, and only otherwise does the request run the identify first. A
        # list the contact is a member of exists: that check answers for the ListID.
        [outcome] = await services.events.track_many(
            account,
            [_stored(checked, ContactRef(email=email, external_id=external_id), naming)],
        )
        if isinstance(outcome, TrackResult):
            assert outcome.visitor_id is not None  # noqa: S101 - set for a command as_named
            await _record_ignored_list(checked, account, services, external_id, visitor_id)
            return _success(outcome.visitor_id, external_id, event == "identify")
        if isinstance(outcome, StorageUnavailable):
            raise outcome
        # Not as named, or refused by a check of the event itself: the identify comes
        # first and is kept either way, then the event is stored or refused as before.
        if email is not None:
            checked = await _check_list(checked, account, services, credential)
        visitor = await services.db.write(
            contacts.identify_visitor,
            account.id,
            email=email,
            external_id=external_id,
            visitor_id=visitor_id,
            new_visitor_id=str(uuid.uuid4()),
            credential=credential,
            now=services.clock.now(),
            changes=traits,
            list_id=checked.list_id if email is not None else None,
        )
        visitor_id, identified = visitor.visitor_id, visitor.newly_identified
        contact = ContactRef(id=visitor.contact_id)
    else:
        visitor_id = visitor_id or str(uuid.uuid4())
        contact = ContactRef.build(anonymous_id=visitor_id, field="UUID")

    commands = [_stored(checked, contact)]
    if identified and event != "identify":
        # The identify Octeth sends on a new email for a visitor, kept as an event.
        commands.insert(
            0,
            TrackCommand(
                name="identify",
                contact=contact,
                source=SOURCE,
                unknown_contact=_policy(contact),
                properties=properties,
                list_id=checked.list_id,
            ),
        )
    for outcome in await services.events.track_many(account, commands):
        if isinstance(outcome, Exception):
            raise outcome
    await _record_ignored_list(checked, account, services, external_id, visitor_id)
    return _success(visitor_id, external_id, identified or event == "identify")


async def _record_ignored_list(
    checked: _Checked,
    account: Account,
    services: Services,
    external_id: str | None,
    visitor_id: str | None,
) -> None:
    """Kept for the account to see: the event was stored without the list it named."""
    if checked.ignored_list is None:
        return
    await services.db.write(
        dropped.record,
        account.id,
        source=SOURCE,
        reason=dropped.UNKNOWN_LIST,
        # as text: the id may be beyond what JSON numbers in the database hold
        payload={"ListID": str(checked.ignored_list), "event": checked.event},
        naming=dropped.naming(
            email=checked.email, external_id=external_id, anonymous_id=visitor_id
        ),
        now=services.clock.now(),
    )


def _policy(contact: ContactRef) -> UnknownContact:
    """A visitor of a request that names no contact may be new; any other contact is
    one the request resolved (or identified) first."""
    if contact.anonymous_id is not None:
        return UnknownContact.CREATE_ALWAYS
    return UnknownContact.REJECT


def _stored(
    checked: _Checked, contact: ContactRef, as_named: VisitorNaming | None = None
) -> TrackCommand:
    """The event of an event.track, as the core stores it."""
    is_conversion = checked.event == "conversion"
    return TrackCommand(
        name=checked.event,
        contact=contact,
        source=SOURCE,
        unknown_contact=_policy(contact),
        title=str(checked.properties["conversion-name"]) if is_conversion else None,
        value=str(checked.properties["conversion-value"]) if is_conversion else None,
        properties=checked.properties,
        list_id=checked.list_id,
        as_named=as_named,
    )


def _success(visitor_id: str, external_id: str | None, identify_sent: bool) -> JSON:
    return JSON(
        {
            "status": "success",
            "uuid": visitor_id,
            "external_id": external_id,
            "identify_event_sent": identify_sent,
        }
    )


async def properties_of_list(params: dict[str, Any], account: Account, services: Services) -> JSON:
    """website_events.properties: property names of the events tracked with a list."""
    raw = params.get("listid")
    if raw in (None, ""):
        raise OctethErrors([(1, "Missing ListID parameter")])
    list_id = _integer(raw)
    if list_id is None:
        raise OctethErrors([(2, "Invalid ListID parameter")])
    if not await _list_exists(list_id, account, services):
        raise OctethErrors([(3, "List not found")])
    found = await services.db.query(queries.list_properties, account.id, list_id)
    return JSON({"ListID": list_id, "Properties": found})


COMMANDS = ("event.track", PROPERTIES)


def _command(params: dict[str, Any], default: str | None = None) -> str:
    command = _text(params.get("command")) or default
    if command is None or command.lower() not in COMMANDS:
        raise OctethErrors([(UNKNOWN_COMMAND, f"Unknown Command {command!r}")])
    return command.lower()


async def _run(
    request: Request,
    params: dict[str, Any],
    account: Account,
    services: Services,
    default: str | None = None,
) -> JSON:
    if _command(params, default) == "event.track":
        return await track(params, account, services, credential_of(request, SOURCE))
    return await properties_of_list(params, account, services)


@router.post("/api/v1/event")
async def event_route(
    request: Request, params: ParamsDep, account: AccountDep, services: ServicesDep
) -> JSON:
    """Command `event.track` (the default here)."""
    return await _run(request, params, account, services, "event.track")


@router.get("/api/v1/website_events.properties")
async def properties_route(params: ParamsDep, account: AccountDep, services: ServicesDep) -> JSON:
    return await properties_of_list(params, account, services)


@router.get("/api.php")
async def legacy_get(
    request: Request, params: ParamsDep, account: AccountDep, services: ServicesDep
) -> JSON:
    """Octeth's legacy endpoint, dispatching on `Command`."""
    return await _run(request, params, account, services)


@router.post("/api.php")
async def legacy_post(
    request: Request, params: ParamsDep, account: AccountDep, services: ServicesDep
) -> JSON:
    """Octeth's legacy endpoint, dispatching on `Command`."""
    return await _run(request, params, account, services)
