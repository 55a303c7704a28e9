"""Native routes for automations and webhook endpoints: parse, call one service, render."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Query
from pydantic import Field
from starlette.responses import Response

from trackbook.automations import service as automations
from trackbook.automations.service import Automation, Run
from trackbook.clock import iso
from trackbook.delivery import webhooks
from trackbook.delivery.webhooks import Delivery, Endpoint
from trackbook.dialects.bodies import DepthCheckedRoute
from trackbook.dialects.native.models import Body, json_content
from trackbook.dialects.native.routes import AccountDep, ServicesDep
from trackbook.dialects.responses import JSON
from trackbook.routing import PrefixRouter
from trackbook.services import Services

router = PrefixRouter(
    prefix="/v1", dependencies=[Depends(json_content)], route_class=DepthCheckedRoute
)
RUN_STATUSES = Literal["pending", "running", "done", "failed", "cancelled"]


class AutomationIn(Body):
    name: str
    enabled: bool = True
    trigger: dict[str, Any] = Field(description='{"event": NAME}: the event that starts a run')
    conditions: dict[str, Any] | None = Field(
        default=None,
        description="min_count, match (value/property conditions), segment_id, subscribed_only",
    )
    frequency: Literal["once", "every_time"] = "every_time"
    actions: list[dict[str, Any]] = Field(
        description="webhook, email, add_tag, remove_tag, add_to_list, remove_from_list, "
        "wait, track; see the automations section of the README"
    )


class AutomationPatchIn(Body):
    name: str | None = None
    enabled: bool | None = None
    trigger: dict[str, Any] | None = None
    conditions: dict[str, Any] | None = None
    frequency: Literal["once", "every_time"] | None = None
    actions: list[dict[str, Any]] | None = None


class WebhookIn(Body):
    url: str
    event_names: list[str] = Field(
        default_factory=list,
        description='Events sent as they are recorded ("*": all); empty: only automations',
    )
    enabled: bool = True


class WebhookPatchIn(Body):
    url: str | None = None
    event_names: list[str] | None = None
    enabled: bool | None = None


def _automation_body(automation: Automation) -> dict[str, Any]:
    return {
        "id": automation.id,
        "name": automation.name,
        "enabled": automation.enabled,
        "trigger": {"event": automation.trigger_event},
        "conditions": automation.conditions,
        "frequency": automation.frequency,
        "actions": automation.actions,
        "created_at": iso(automation.created_at),
        "updated_at": iso(automation.updated_at),
    }


def _run_body(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "automation_id": run.automation_id,
        "event_id": run.event_id,
        "contact_id": run.contact_id,
        "status": run.status,
        "step": run.step,
        "attempts": run.attempts,
        "error": run.last_error,
        "next_attempt_at": iso(run.next_attempt_at),
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "finished_at": iso(run.finished_at) if run.finished_at else None,
    }


@router.post("/automations", status_code=201, tags=["automations"])
async def create_automation(body: AutomationIn, account: AccountDep, services: ServicesDep) -> JSON:
    automation = await services.db.write(
        automations.create_automation,
        account.id,
        body.model_dump(),
        now=services.clock.now(),
    )
    return JSON(_automation_body(automation), status_code=201)


@router.get("/automations", tags=["automations"])
async def list_automations(account: AccountDep, services: ServicesDep) -> JSON:
    found = await services.db.query(automations.list_automations, account.id)
    return JSON({"data": [_automation_body(automation) for automation in found]})


@router.get("/automations/{automation_id}", tags=["automations"])
async def get_automation(automation_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    found = await services.db.query(automations.get_automation, account.id, automation_id)
    return JSON(_automation_body(found))


@router.patch("/automations/{automation_id}", tags=["automations"])
async def patch_automation(
    automation_id: int, body: AutomationPatchIn, account: AccountDep, services: ServicesDep
) -> JSON:
    automation = await services.db.write(
        automations.update_automation,
        account.id,
        automation_id,
        body.model_dump(exclude_unset=True),
        now=services.clock.now(),
    )
    return JSON(_automation_body(automation))


async def _switch(automation_id: int, enabled: bool, account_id: int, services: Services) -> JSON:
    automation = await services.db.write(
        automations.update_automation,
        account_id,
        automation_id,
        {"enabled": enabled},
        now=services.clock.now(),
    )
    return JSON(_automation_body(automation))


@router.post("/automations/{automation_id}/enable", tags=["automations"])
async def enable_automation(automation_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    return await _switch(automation_id, True, account.id, services)


@router.post("/automations/{automation_id}/disable", tags=["automations"])
async def disable_automation(
    automation_id: int, account: AccountDep, services: ServicesDep
) -> JSON:
    """Stops new runs; runs not finished yet are cancelled at their next step."""
    return await _switch(automation_id, False, account.id, services)


@router.delete("/automations/{automation_id}", status_code=204, tags=["automations"])
async def delete_automation(
    automation_id: int, account: AccountDep, services: ServicesDep
) -> Response:
    await services.db.write(automations.delete_automation, account.id, automation_id)
    return Response(status_code=204)


@router.get("/automations/{automation_id}/runs", tags=["automations"])
async def list_runs(
    automation_id: int,
    account: AccountDep,
    services: ServicesDep,
    status: RUN_STATUSES | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[int | None, Query(description="next_cursor of the previous page")] = None,
) -> JSON:
    """Runs newest first, each with its status, attempts at the current step and error."""
    runs = await services.db.query(
        automations.list_runs,
        account.id,
        automation_id,
        status=status,
        before_id=cursor,
        limit=limit + 1,
    )
    page = runs[:limit]
    next_cursor = page[-1].id if len(runs) > limit else None
    return JSON({"data": [_run_body(run) for run in page], "next_cursor": next_cursor})


def _endpoint_body(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_names": endpoint.event_names,
        "enabled": endpoint.enabled,
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }


def _delivery_body(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "run_id": delivery.run_id,
        "status": delivery.status,
        "error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at) if delivery.delivered_at else None,
        "attempts": [
            {
                "attempted_at": iso(attempt.attempted_at),
                "status_code": attempt.status_code,
                "error": attempt.error,
                "duration_ms": attempt.duration_ms,
            }
            for attempt in delivery.attempts
        ],
    }


@router.post("/webhooks", status_code=201, tags=["webhooks"])
async def create_webhook(body: WebhookIn, account: AccountDep, services: ServicesDep) -> JSON:
    """The signing secret is in this answer only: store it now."""
    created = await webhooks.add_endpoint(
        services.db,
        account.id,
        url=body.url,
        event_names=body.event_names,
        enabled=body.enabled,
        now=services.clock.now(),
        keyring=services.keyring,
        allow_private=services.settings.webhook_allow_private,
    )
    return JSON(_endpoint_body(created.endpoint) | {"secret": created.secret}, status_code=201)


@router.get("/webhooks", tags=["webhooks"])
async def list_webhooks(account: AccountDep, services: ServicesDep) -> JSON:
    found = await services.db.query(webhooks.list_endpoints, account.id)
    return JSON({"data": [_endpoint_body(endpoint) for endpoint in found]})


@router.get("/webhooks/{webhook_id}", tags=["webhooks"])
async def get_webhook(webhook_id: int, account: AccountDep, services: ServicesDep) -> JSON:
    endpoint = await services.db.query(webhooks.get_endpoint, account.id, webhook_id)
    return JSON(_endpoint_body(endpoint))


@router.patch("/webhooks/{webhook_id}", tags=["webhooks"])
async def patch_webhook(
    webhook_id: int, body: WebhookPatchIn, account: AccountDep, services: ServicesDep
) -> JSON:
    endpoint = await webhooks.change_endpoint(
        services.db,
        account.id,
        webhook_id,
        now=services.clock.now(),
        allow_private=services.settings.webhook_allow_private,
        url=body.url,
        event_names=body.event_names,
        enabled=body.enabled,
    )
    return JSON(_endpoint_body(endpoint))


@router.delete("/webhooks/{webhook_id}", status_code=204, tags=["webhooks"])
async def delete_webhook(webhook_id: int, account: AccountDep, services: ServicesDep) -> Response:
    await services.db.write(webhooks.delete_endpoint, account.id, webhook_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", tags=["webhooks"])
async def list_deliveries(
    webhook_id: int,
    account: AccountDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSON:
    """The latest deliveries, newest first, each with every attempt made."""
    found = await services.db.query(webhooks.list_deliveries, account.id, webhook_id, limit=limit)
    return JSON({"data": [_delivery_body(delivery) for delivery in found]})
