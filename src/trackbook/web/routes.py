"""The dashboard: server-rendered pages over the same services the APIs use."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import Depends, Query, Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.responses import HTMLResponse, RedirectResponse, Response

from trackbook.accounts import service as accounts
from trackbook.accounts import users
from trackbook.accounts.service import Account
from trackbook.accounts.users import Session
from trackbook.automations import service as automations
from trackbook.contacts import service as contacts
from trackbook.contacts.errors import ListInUse
from trackbook.delivery import webhooks
from trackbook.errors import DomainError
from trackbook.events import catalog, dropped, queries
from trackbook.keyring import same_secret
from trackbook.routing import PrefixRouter
from trackbook.segments import service as segments
from trackbook.segments.errors import SegmentBroken
from trackbook.services import Services, services_of
from trackbook.web.charts import bar_chart, per_day
from trackbook.web.session import (
    COOKIE,
    SIGNIN_CSRF_COOKIE,
    SessionDep,
    checked_form,
    set_cookie,
)

router = PrefixRouter(include_in_schema=False)
ServicesDep = Annotated[Services, Depends(services_of)]
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
PAGE_SIZE = 25


def when(moment: datetime | None, timezone: str) -> Markup:
    """A time in the account's zone, with UTC on hover."""
    if moment is None:
        return Markup("—")
    local = moment.astimezone(ZoneInfo(timezone))
    utc = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{0}" title="{0} UTC">{1}</time>').format(
        utc, local.strftime("%Y-%m-%d %H:%M:%S %Z")
    )


def as_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if value else ""


templates.env.globals["when"] = when
templates.env.filters["json"] = as_json


async def _account(services: Services, session: Session) -> Account:
    found: Account = await services.db.query(accounts.get_account, session.user.account_id)
    return found


async def page(
    request: Request,
    services: Services,
    session: Session,
    template: str,
    *,
    status_code: int = 200,
    account: Account | None = None,
    **context: Any,
) -> HTMLResponse:
    """The template with the session, the account (read here unless the route has it)
    and this server's URL."""
    if account is None:
        account = await _account(services, session)
    return templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "account": account,
            "tz": account.timezone,
            "base_url": str(request.base_url).rstrip("/"),
            **context,
        },
        status_code=status_code,
    )


def back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# sign-in and sign-out


@router.get("/signin")
async def signin_form(request: Request, next: str = "/") -> HTMLResponse:
    return _signin_page(request, next, error=None)


def _signin_page(request: Request, next_path: str, *, error: str | None) -> HTMLResponse:
    csrf = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request,
        "signin.html",
        {"next": next_path if next_path.startswith("/") else "/", "csrf": csrf, "error": error},
        status_code=401 if error else 200,
    )
    set_cookie(response, request, SIGNIN_CSRF_COOKIE, csrf, max_age=3600)
    return response


@router.post("/signin")
async def signin(request: Request, services: ServicesDep) -> Response:
    client = request.client.host if request.client else "unknown"
    await services.limiter.check(request, "signin", f"ip:{client}")
    form = await request.form()
    next_path = str(form.get("next") or "/")
    expected = request.cookies.get(SIGNIN_CSRF_COOKIE, "")
    if not expected or not same_secret(str(form.get("csrf", "")), expected):
        return _signin_page(request, next_path, error="The form expired; please sign in again.")
    signed_in = await services.db.write(
        users.sign_in,
        str(form.get("email", "")),
        str(form.get("password", "")),
        now=services.clock.now(),
    )
    if signed_in is None:
        return _signin_page(request, next_path, error="Wrong email or password.")
    token, _ = signed_in
    response = back(
        next_path if next_path.startswith("/") and not next_path.startswith("//") else "/"
    )
    set_cookie(
        response, request, COOKIE, token, max_age=int(users.SESSION_LIFETIME.total_seconds())
    )
    response.delete_cookie(SIGNIN_CSRF_COOKIE, path="/")
    return response


@router.post("/signout")
async def signout(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    await checked_form(request, session)
    await services.db.write(users.sign_out, request.cookies.get(COOKIE, ""))
    response = back("/signin")
    response.delete_cookie(COOKIE, path="/")
    return response


# overview


@router.get("/")
async def overview(request: Request, session: SessionDep, services: ServicesDep) -> HTMLResponse:
    account = await _account(services, session)
    now = services.clock.now()
    today = now.astimezone(ZoneInfo(account.timezone)).date()
    hourly = await services.db.query(
        queries.hourly_counts, account.id, since=now - timedelta(days=31)
    )
    series = per_day(hourly, today=today, days=30, timezone=account.timezone)
    names = sorted(
        await services.db.query(queries.list_event_names, account.id),
        key=lambda name: -name.count,
    )[:10]
    active = await services.db.query(queries.recently_active, account.id, limit=10)
    people = {
        contact_id: await services.db.query(contacts.get_contact, account.id, contact_id)
        for contact_id, _ in active
    }
    return await page(
        request,
        services,
        session,
        "overview.html",
        account=account,
        chart=bar_chart(series, label="Events per day, last 30 days"),
        total=sum(count for _, count in series),
        names=names,
        active=[(people[contact_id], latest) for contact_id, latest in active],
        dropped_count=await services.db.query(dropped.count, account.id),
    )


# contacts


@router.get("/contacts")
async def contact_list(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    q: str = "",
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> HTMLResponse:
    return await _contacts_page(request, session, services, q=q, page_number=page_number)


async def _contacts_page(
    request: Request,
    session: Session,
    services: Services,
    *,
    q: str = "",
    page_number: int = 1,
    error: str | None = None,
) -> HTMLResponse:
    account_id = session.user.account_id
    total, found = await services.db.query(
        contacts.search_contacts,
        account_id,
        search=q.strip() or None,
        offset=(page_number - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    return await page(
        request,
        services,
        session,
        "contacts.html",
        q=q,
        contacts=found,
        total=total,
        page_number=page_number,
        pages=max(1, -(-total // PAGE_SIZE)),
        lists=await services.db.query(contacts.list_lists, account_id),
        error=error,
    )


@router.post("/contacts/lists")
async def create_list(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    form = await checked_form(request, session)
    try:
        await services.db.write(
            contacts.create_list,
            session.user.account_id,
            str(form.get("name", "")),
            now=services.clock.now(),
        )
    except DomainError as error:
        return await _contacts_page(request, session, services, error=error.message)
    return back("/contacts")


@router.post("/contacts/lists/{list_id}/delete")
async def delete_list(
    list_id: int, request: Request, session: SessionDep, services: ServicesDep
) -> Response:
    await checked_form(request, session)
    try:
        await services.db.write(contacts.delete_list, session.user.account_id, list_id)
    except ListInUse as error:
        # another account's list (or none) stays a 404 page, as every page naming an id
        return await _contacts_page(request, session, services, error=error.message)
    return back("/contacts")


@router.get("/contacts/{contact_id}")
async def contact_page(
    contact_id: int,
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    cursor: str | None = None,
) -> HTMLResponse:
    account_id = session.user.account_id
    details = await services.db.query(contacts.get_contact_details, account_id, contact_id)
    timeline = await services.db.query(
        queries.timeline, account_id, contact_id, limit=50, cursor=cursor
    )
    counters = await services.db.query(queries.summaries, account_id, contact_id)
    all_lists = {
        item.id: item.name for item in await services.db.query(contacts.list_lists, account_id)
    }
    return await page(
        request,
        services,
        session,
        "contact.html",
        details=details,
        contact=details.contact,
        lists=[all_lists.get(list_id, f"#{list_id}") for list_id in details.list_ids],
        timeline=timeline,
        counters=counters,
    )


# events


@router.get("/events")
async def event_names(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> HTMLResponse:
    total, entries = await services.db.query(
        queries.catalog_page,
        session.user.account_id,
        offset=(page_number - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    return await page(
        request,
        services,
        session,
        "events.html",
        entries=entries,
        total=total,
        page_number=page_number,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


@router.get("/events/{name:path}")
async def event_occurrences(
    name: str, request: Request, session: SessionDep, services: ServicesDep
) -> HTMLResponse:
    recent = await services.db.query(
        queries.recent_of_name, session.user.account_id, name, limit=50
    )
    return await page(request, services, session, "event.html", name=name, recent=recent)


@router.post("/events/whitelist")
async def toggle_whitelist(
    request: Request, session: SessionDep, services: ServicesDep
) -> Response:
    form = await checked_form(request, session)
    name = str(form.get("name", ""))
    if form.get("whitelisted") == "on":
        await services.db.write(
            catalog.whitelist, session.user.account_id, name, now=services.clock.now()
        )
    else:
        await services.db.write(catalog.unwhitelist, session.user.account_id, name)
    return back("/events")


# segments


def _definition_from(form: Any) -> Any:
    """The definition of the builder's fields, or of the JSON box when it is filled."""
    raw = str(form.get("definition", "")).strip()
    if raw:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise DomainError(f"the definition is not valid JSON: {error}") from None
    condition: dict[str, Any] = {"name": str(form.get("event", "")).strip()}
    if form.get("op") and str(form.get("count", "")).strip():
        try:
            condition["count"] = {"op": str(form["op"]), "value": int(str(form["count"]))}
        except ValueError:
            raise DomainError("the count must be a whole number") from None
    days = str(form.get("days", "")).strip()
    if days:
        try:
            condition["within"] = {"last": int(days), "unit": "days"}
        except ValueError:
            raise DomainError("the days must be a whole number") from None
    return {"all": [{"event": condition}]}


@router.get("/segments")
async def segment_list(
    request: Request, session: SessionDep, services: ServicesDep
) -> HTMLResponse:
    return await _segments_page(request, session, services)


async def _segments_page(
    request: Request,
    session: SessionDep,
    services: Services,
    *,
    form: Any = None,
    preview: tuple[int, list[contacts.Contact]] | None = None,
    error: str | None = None,
    saved: str | None = None,
) -> HTMLResponse:
    account_id = session.user.account_id
    found = await services.db.query(segments.list_segments, account_id)
    counts: dict[int, int] = {}
    broken: dict[int, str] = {}
    for segment in found:
        try:
            counts[segment.id] = await services.db.query(
                segments.count_segment, segment, now=services.clock.now()
            )
        except SegmentBroken as refusal:
            broken[segment.id] = refusal.reason
    return await page(
        request,
        services,
        session,
        "segments.html",
        status_code=422 if error else 200,
        segments=found,
        counts=counts,
        broken=broken,
        form=form or {},
        preview=preview,
        error=error,
        saved=saved,
    )


@router.post("/segments")
async def segment_builder(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    form = await checked_form(request, session)
    account_id = session.user.account_id
    fields = {key: str(value) for key, value in form.items() if key != "csrf"}
    try:
        definition = _definition_from(form)
        if form.get("action") == "save":
            segment = await services.db.write(
                segments.create_segment,
                account_id,
                str(form.get("name", "")),
                definition,
                now=services.clock.now(),
            )
            return await _segments_page(request, session, services, saved=segment.name)
        now = services.clock.now()
        total = await services.db.query(segments.count_members, account_id, definition, now=now)
        first = await services.db.query(segments.members, account_id, definition, now=now, limit=10)
    except DomainError as error:
        return await _segments_page(request, session, services, form=fields, error=error.message)
    return await _segments_page(request, session, services, form=fields, preview=(total, first))


# automations


@router.get("/automations")
async def automation_list(
    request: Request, session: SessionDep, services: ServicesDep
) -> HTMLResponse:
    account_id = session.user.account_id
    found = await services.db.query(automations.list_automations, account_id)
    last_runs = {}
    for automation in found:
        runs = await services.db.query(automations.list_runs, account_id, automation.id, limit=1)
        last_runs[automation.id] = runs[0] if runs else None
    return await page(
        request, services, session, "automations.html", automations=found, last_runs=last_runs
    )


@router.post("/automations/{automation_id}/enabled")
async def toggle_automation(
    automation_id: int, request: Request, session: SessionDep, services: ServicesDep
) -> Response:
    form = await checked_form(request, session)
    await services.db.write(
        automations.update_automation,
        session.user.account_id,
        automation_id,
        {"enabled": form.get("enabled") == "on"},
        now=services.clock.now(),
    )
    return back("/automations")


@router.get("/automations/{automation_id}/runs")
async def automation_runs(
    automation_id: int, request: Request, session: SessionDep, services: ServicesDep
) -> HTMLResponse:
    account_id = session.user.account_id
    automation = await services.db.query(automations.get_automation, account_id, automation_id)
    runs = await services.db.query(automations.list_runs, account_id, automation_id, limit=100)
    return await page(request, services, session, "runs.html", automation=automation, runs=runs)


# settings


async def _settings_page(
    request: Request, session: Session, services: Services, **shown: Any
) -> HTMLResponse:
    account_id = session.user.account_id
    account = await _account(services, session)
    endpoints = await services.db.query(webhooks.list_endpoints, account_id)
    deliveries = {
        endpoint.id: await services.db.query(
            webhooks.list_deliveries, account_id, endpoint.id, limit=5
        )
        for endpoint in endpoints
    }
    return await page(
        request,
        services,
        session,
        "settings.html",
        account=account,
        keys=await services.db.query(accounts.list_keys, account_id),
        endpoints=endpoints,
        deliveries=deliveries,
        users=await services.db.query(users.list_users, account_id),
        event_key=services.keyring.open(account.sealed_event_key),
        **shown,
    )


@router.get("/settings")
async def settings_page(
    request: Request, session: SessionDep, services: ServicesDep
) -> HTMLResponse:
    return await _settings_page(request, session, services)


@router.post("/settings/tracking")
async def set_tracking(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    form = await checked_form(request, session)
    await services.db.write(
        accounts.update_account,
        session.user.account_id,
        tracking_enabled=form.get("tracking") == "on",
        timezone=str(form["timezone"]) if form.get("timezone") else None,
    )
    services.auth.forget_account(session.user.account_id)
    return back("/settings")


@router.post("/settings/keys")
async def create_key(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    form = await checked_form(request, session)
    publishable = form.get("kind") == accounts.KeyKind.PUBLISHABLE.value
    try:
        issued = await services.db.write(
            accounts.create_key,
            session.user.account_id,
            now=services.clock.now(),
            name=str(form.get("name", "")).strip() or "dashboard",
            kind=accounts.KeyKind.PUBLISHABLE if publishable else accounts.KeyKind.SECRET,
            origins=str(form.get("origins", "")).replace(",", " ").split(),
        )
    except DomainError as error:
        return await _settings_page(request, session, services, error=error.message)
    services.auth.forget_account(session.user.account_id)
    return await _settings_page(request, session, services, new_key=issued.secret)


@router.post("/settings/keys/revoke")
async def revoke_key(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    form = await checked_form(request, session)
    await services.db.write(
        accounts.revoke_key,
        str(form.get("prefix", "")),
        now=services.clock.now(),
        account_id=session.user.account_id,
    )
    services.auth.forget_account(session.user.account_id)
    return back("/settings")


@router.post("/settings/event-key")
async def rotate_event_key(
    request: Request, session: SessionDep, services: ServicesDep
) -> Response:
    await checked_form(request, session)
    await services.db.write(
        accounts.rotate_event_key, session.user.account_id, keyring=services.keyring
    )
    services.auth.forget_account(session.user.account_id)
    return back("/settings")


@router.post("/settings/webhooks")
async def add_webhook(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    form = await checked_form(request, session)
    names = [name.strip() for name in str(form.get("event_names", "")).split(",") if name.strip()]
    try:
        created = await webhooks.add_endpoint(
            services.db,
            session.user.account_id,
            url=str(form.get("url", "")).strip(),
            event_names=names,
            enabled=True,
            now=services.clock.now(),
            keyring=services.keyring,
            allow_private=services.settings.webhook_allow_private,
        )
    except DomainError as error:
        return await _settings_page(request, session, services, error=error.message)
    return await _settings_page(request, session, services, new_secret=created.secret)


@router.post("/settings/users")
async def add_user(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    form = await checked_form(request, session)
    password = users.new_password()
    try:
        user = await services.db.write(
            users.create_user,
            session.user.account_id,
            str(form.get("email", "")),
            password,
            now=services.clock.now(),
        )
    except DomainError as error:
        return await _settings_page(request, session, services, error=error.message)
    return await _settings_page(
        request, services=services, session=session, new_user=(user.email, password)
    )


# dropped events


@router.get("/dropped")
async def dropped_events(
    request: Request, session: SessionDep, services: ServicesDep
) -> HTMLResponse:
    found = await services.db.query(dropped.newest, session.user.account_id, limit=100)
    return await page(request, services, session, "dropped.html", dropped=found)
