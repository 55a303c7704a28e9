"""trackcmp's POST /event and v1's track_event_add: form-encoded events by email."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Query
from starlette.requests import Request

from trackbook.accounts.service import Account
from trackbook.contacts.errors import ContactNotFound
from trackbook.contacts.identity import ContactRef, UnknownContact, normalise_email
from trackbook.dialects.activecampaign.errors import TrackcmpRefused
from trackbook.dialects.params import merged_params, php_params
from trackbook.dialects.responses import JSON
from trackbook.errors import Invalid
from trackbook.events import dropped
from trackbook.events.model import TrackCommand
from trackbook.keyring import same_secret
from trackbook.metrics import current_account
from trackbook.routing import PrefixRouter
from trackbook.services import Services, services_of

router = PrefixRouter(tags=["ActiveCampaign dialect"])
ServicesDep = Annotated[Services, Depends(services_of)]
# ActiveCampaign's limit on event names sent to trackcmp.
EVENT_NAME_MAX = 32
SPAWNED = {"success": 1, "message": "Event spawned"}


def _visit(raw: Any) -> dict[str, Any]:
    """`visit` as a JSON string, or already an object (visit[email]=… in the form)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TrackcmpRefused('visit must be a JSON object such as {"email":"a@b.c"}') from None
    if not isinstance(raw, dict):
        raise TrackcmpRefused('visit must be a JSON object such as {"email":"a@b.c"}')
    return raw


async def _account_by_actid(request: Request, services: Services, actid: Any, key: Any) -> Account:
    client = request.client.host if request.client else "unknown"
    await services.limiter.check(request, "trackcmp_ip", f"ip:{client}")
    if not isinstance(actid, str) or not isinstance(key, str) or not actid or not key:
        raise TrackcmpRefused("actid and key are required", 403)
    await services.limiter.check(request, "trackcmp_actid", f"actid:{actid.strip()}")
    account = await services.auth.account_by_actid(actid.strip())
    if account is None or not same_secret(
        key.strip(), services.keyring.open(account.sealed_event_key)
    ):
        raise TrackcmpRefused("Invalid actid or key", 403)
    current_account.set(account.id)
    return account


async def spawn(params: dict[str, Any], account: Account, services: Services) -> JSON:
    """Logs the event for the contact named in `visit`. As ActiveCampaign documents, an
    unknown contact's event and every event while tracking is off are not saved, yet
    answered as spawned; Trackbook keeps each in dropped_events with the reason."""
    event = params.get("event")
    if not isinstance(event, str) or not event.strip():
        raise TrackcmpRefused("event is required")
    if len(event) > EVENT_NAME_MAX:
        raise TrackcmpRefused(f"event must be at most {EVENT_NAME_MAX} characters")
    visit = _visit(params.get("visit"))
    eventdata = params.get("eventdata")
    value = None if eventdata is None else str(eventdata)
    payload = {"event": event, "eventdata": value, "visit": visit}
    naming = dropped.naming(email=visit.get("email"))
    now = services.clock.now()
    if not account.tracking_enabled:
        await services.db.write(
            dropped.record, account.id, source="activecampaign",
            reason=dropped.TRACKING_DISABLED, payload=payload, naming=naming, now=now,
        )  # fmt: skip
        return JSON(SPAWNED)
    try:
        email = normalise_email(str(visit.get("email") or ""))
        command = TrackCommand(
            name=event,
            contact=ContactRef(email=email),
            source="activecampaign",
            unknown_contact=UnknownContact.REJECT,
            value=value,
            properties={k: v for k, v in visit.items() if k != "email"} or None,
        )
        await services.events.track(account, command)
    except (ContactNotFound, Invalid) as error:
        if isinstance(error, Invalid) and error.field != "email":
            raise TrackcmpRefused(error.message) from None
        await services.db.write(
            dropped.record, account.id, source="activecampaign",
            reason=dropped.UNKNOWN_CONTACT, payload=payload, naming=naming, now=now,
        )  # fmt: skip
    return JSON(SPAWNED)


@router.post("/event")
async def trackcmp_event(request: Request, services: ServicesDep) -> JSON:
    """trackcmp.net/event: actid and key name the account; the form carries the event."""
    params = await merged_params(request)
    account = await _account_by_actid(request, services, params.get("actid"), params.get("key"))
    return await spawn(params, account, services)


@router.post("/admin/api.php")
async def v1_api(
    request: Request,
    services: ServicesDep,
    api_action: Annotated[str | None, Query()] = None,
) -> JSON:
    """v1 `track_event_add`: form-encoded only, as ActiveCampaign's v1 API is."""
    if api_action != "track_event_add":
        raise TrackcmpRefused(f"api_action {api_action!r} is not supported here")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise TrackcmpRefused(
            "track_event_add accepts only form data "
            "(Content-Type: application/x-www-form-urlencoded), not JSON or other formats"
        )
    form = await request.form()
    params = php_params(request.query_params.multi_items())
    params.update(php_params((k, v) for k, v in form.multi_items() if isinstance(v, str)))
    secret = params.get("api_key")
    account = await services.auth.authenticate(secret if isinstance(secret, str) else None)
    await services.limiter.check(request, "activecampaign", f"account:{account.id}")
    if params.get("actid") != account.actid or not same_secret(
        str(params.get("key") or ""), services.keyring.open(account.sealed_event_key)
    ):
        raise TrackcmpRefused("Invalid actid or key", 403)
    return await spawn(params, account, services)
