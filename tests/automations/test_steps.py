"""What a run does step by step, which events start runs, and where webhooks may go."""

from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.automations.conftest import WebhookReceiver, drain
from tests.automations.test_end_to_end import create_automation, runs_of
from tests.support import ManualClock, Tenant, make_tenant
from trackbook.app import create_app
from trackbook.contacts import service as contacts
from trackbook.db.tables import webhook_endpoints
from trackbook.delivery.guard import BlockedTarget, check_url, resolve
from trackbook.delivery.webhooks import WebhookSender
from trackbook.errors import ERROR_TEXT_MAX
from trackbook.keyring import Keyring, new_key
from trackbook.services import Services
from trackbook.settings import Settings


async def track(
    client: httpx.AsyncClient, tenant: Tenant, event: str, email: str, **fields: object
) -> dict:
    response = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": event, "contact": {"email": email}, **fields},
    )
    assert response.status_code == 201, response.text
    body: dict = response.json()
    return body


async def subscribe(client: httpx.AsyncClient, tenant: Tenant, url: str, event: str) -> int:
    """A webhook endpoint sent the events of one name as they are recorded; its id."""
    response = await client.post(
        "/v1/webhooks", headers=tenant.headers, json={"url": url, "event_names": [event]}
    )
    assert response.status_code == 201, response.text
    endpoint_id: int = response.json()["id"]
    return endpoint_id


async def deliveries_of(client: httpx.AsyncClient, tenant: Tenant, endpoint_id: int) -> list:
    response = await client.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=tenant.headers)
    assert response.status_code == 200, response.text
    found: list = response.json()["data"]
    return found


async def test_tags_lists_wait_and_track_steps_run_in_order(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, clock: ManualClock
) -> None:
    clock.set(clock.now())
    vip = await client.post("/v1/lists", headers=tenant.headers, json={"name": "Customers"})
    list_id = vip.json()["id"]
    automation_id = await create_automation(
        client,
        tenant,
        name="Onboarding",
        trigger={"event": "purchase"},
        actions=[
            {"type": "add_tag", "tag": "buyer"},
            {"type": "remove_tag", "tag": "prospect"},
            {"type": "wait", "amount": 2, "unit": "hours"},
            {"type": "add_to_list", "list_id": list_id},
            {"type": "track", "event": "onboarded", "value": 1, "properties": {"by": "automation"}},
        ],
    )
    contact = await client.post(
        "/v1/contacts", headers=tenant.headers, json={"email": "b@example.com"}
    )
    contact_id = contact.json()["id"]
    await services.db.write(
        contacts.tag_contact, tenant.id, contact_id, ["prospect", "reader"], now=clock.now()
    )
    await track(client, tenant, "purchase", "b@example.com")
    await drain(services)

    [run] = await runs_of(client, tenant, automation_id)
    assert (run["status"], run["step"]) == ("pending", 3)
    details = (await client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers)).json()
    assert details["tags"] == ["buyer", "reader"]
    assert details["list_ids"] == []
    clock.advance(timedelta(hours=1))
    await drain(services)
    assert (await runs_of(client, tenant, automation_id))[0]["step"] == 3

    clock.advance(timedelta(hours=1, seconds=1))
    await drain(services)
    [run] = await runs_of(client, tenant, automation_id)
    assert (run["status"], run["finished_at"] is not None) == ("done", True)
    details = (await client.get(f"/v1/contacts/{contact_id}", headers=tenant.headers)).json()
    assert details["list_ids"] == [list_id]
    events = await client.get(f"/v1/contacts/{contact_id}/events", headers=tenant.headers)
    newest = events.json()["data"][0]
    assert (newest["event"], newest["value"], newest["source"]) == ("onboarded", "1", "automation")
    assert newest["properties"] == {"by": "automation"}


async def test_once_per_contact_and_old_events_start_nothing(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, clock: ManualClock
) -> None:
    once = await create_automation(
        client,
        tenant,
        name="Welcome once",
        trigger={"event": "login"},
        frequency="once",
        actions=[{"type": "add_tag", "tag": "welcomed"}],
    )
    every = await create_automation(
        client,
        tenant,
        name="Count logins",
        trigger={"event": "login"},
        actions=[{"type": "add_tag", "tag": "active"}],
    )
    for _ in range(2):
        await track(client, tenant, "login", "o@example.com")
    await track(client, tenant, "login", "p@example.com")
    old = (clock.now() - timedelta(hours=73)).isoformat()
    await track(client, tenant, "login", "q@example.com", timestamp=old)
    await drain(services)
    assert len(await runs_of(client, tenant, once)) == 2  # o and p, once each; q is too old
    assert len(await runs_of(client, tenant, every)) == 3


async def test_conditions_on_subscription_and_segment(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    segment = await client.post(
        "/v1/segments",
        headers=tenant.headers,
        json={
            "name": "Example staff",
            "definition": {
                "contact": {"field": "email_domain", "op": "equals", "value": "staff.example"}
            },
        },
    )
    automation_id = await create_automation(
        client,
        tenant,
        name="Staff downloads",
        trigger={"event": "download"},
        conditions={
            "segment_id": segment.json()["id"],
            "subscribed_only": True,
            "match": [{"value": {"op": "contains", "value": ".PDF"}}],
        },
        actions=[{"type": "add_tag", "tag": "reader"}],
    )
    await client.post(
        "/v1/contacts",
        headers=tenant.headers,
        json={"email": "gone@staff.example", "status": "unsubscribed"},
    )
    await track(client, tenant, "download", "a@staff.example", value="guide.pdf")
    await track(client, tenant, "download", "a@staff.example", value="guide.zip")
    await track(client, tenant, "download", "b@elsewhere.example", value="guide.pdf")
    await track(client, tenant, "download", "gone@staff.example", value="guide.pdf")
    await drain(services)
    [run] = await runs_of(client, tenant, automation_id)
    assert run["status"] == "done"


async def test_disabled_automation_cancels_its_waiting_runs(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, clock: ManualClock
) -> None:
    clock.set(clock.now())
    automation_id = await create_automation(
        client,
        tenant,
        name="Later",
        trigger={"event": "trial"},
        actions=[
            {"type": "wait", "amount": 1, "unit": "days"},
            {"type": "add_tag", "tag": "t"},
        ],
    )
    await track(client, tenant, "trial", "t@example.com")
    await drain(services)
    await client.post(f"/v1/automations/{automation_id}/disable", headers=tenant.headers)
    await track(client, tenant, "trial", "t@example.com")  # starts nothing now
    clock.advance(timedelta(days=1, seconds=1))
    await drain(services)
    [run] = await runs_of(client, tenant, automation_id)
    assert (run["status"], run["error"]) == ("cancelled", "the automation is disabled")


async def test_endpoint_receives_the_events_it_subscribes_to(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, receiver: WebhookReceiver
) -> None:
    hook = await subscribe(client, tenant, receiver.url, "signup")
    silent = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    tracked = await track(client, tenant, "signup", "s@example.com", properties={"plan": "pro"})
    await track(client, tenant, "pageview", "s@example.com")
    await drain(services)
    [received] = receiver.received
    assert b'"type":"event.recorded"' in received.body
    assert f'"id":"{tracked["id"]}"'.encode() in received.body
    [delivery] = await deliveries_of(client, tenant, hook)
    assert (delivery["status"], delivery["event_id"]) == ("delivered", tracked["id"])
    assert delivery["webhook_id"] == received.headers["webhook-id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    assert await deliveries_of(client, tenant, silent.json()["id"]) == []


async def test_a_secret_sealed_with_another_server_key_fails_its_delivery_alone(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, receiver: WebhookReceiver
) -> None:
    sealed_elsewhere = await subscribe(client, tenant, receiver.url, "signup")
    hook = await subscribe(client, tenant, receiver.url, "signup")
    async with services.db.transaction() as conn:
        await conn.execute(
            webhook_endpoints.update()
            .where(webhook_endpoints.c.id == sealed_elsewhere)
            .values(secret=Keyring([new_key()]).seal("whsec_" + "A" * 32))
        )
    tracked = await track(client, tenant, "signup", "k@example.com")
    await drain(services)
    [received] = receiver.received
    assert f'"id":"{tracked["id"]}"'.encode() in received.body
    assert [d["status"] for d in await deliveries_of(client, tenant, hook)] == ["delivered"]
    [delivery] = await deliveries_of(client, tenant, sealed_elsewhere)
    assert delivery["status"] == "pending"  # retried once the right key is set
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] is None
    assert "sealed with another server key" in attempt["error"]


PRIVATE_HOSTS = [
    "127.0.0.1",
    "10.1.2.3",
    "192.168.0.1",
    "169.254.169.254",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[fd00:ec2::254]",
    "100.64.0.1",
    "localhost",
    "0.0.0.0",  # noqa: S104 - a target to refuse, not an address to bind
    "[::7f00:1]",  # IPv4-compatible 127.0.0.1
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[2002:a9fe:a9fe::]",  # 6to4 of 169.254.169.254
    "[fec0::1]",  # site-local
    "[::ffff:0:a9fe:a9fe]",  # IPv4-translated 169.254.169.254
    "[64:ff9b:1::a00:1]",  # local-use NAT64 of 10.0.0.1
]


@pytest.mark.parametrize("host", PRIVATE_HOSTS)
async def test_private_targets_are_refused(host: str) -> None:
    with pytest.raises(BlockedTarget):
        await resolve(check_url(f"http://{host}/hook"), allow_private=False)


async def test_public_target_resolves_to_the_address_dialled() -> None:
    address = await resolve(check_url("http://93.184.215.14:8080/x"), allow_private=False)
    assert address == ipaddress.ip_address("93.184.215.14")


async def test_sender_refuses_a_loopback_receiver_without_sending(
    receiver: WebhookReceiver, clock: ManualClock
) -> None:
    sender = WebhookSender(timeout=5, allow_private=False)
    try:
        result = await sender.send(
            receiver.url, "whsec_" + "A" * 32, "msg_1", {"a": 1}, sent_at=clock.now()
        )
    finally:
        await sender.close()
    assert (result.delivered, result.permanent) == (False, True)
    assert result.error is not None
    assert "not a public address" in result.error
    assert receiver.received == []


async def test_a_long_delivery_error_is_kept_and_logged_bounded(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the endpoint's own words in the error: a redirect to 12,000 characters of URL
    receiver.answers = [302]
    receiver.answer_headers = {"location": "https://example.com/" + "a" * 12_000}
    endpoint_id = await subscribe(client, tenant, receiver.url, "order")
    await track(client, tenant, "order", "redirected@example.com")
    caplog.set_level(logging.INFO, logger="trackbook.delivery.worker")
    await drain(services)
    [delivery] = await deliveries_of(client, tenant, endpoint_id)
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 302
    for error in (delivery["error"], attempt["error"]):
        assert len(error) <= ERROR_TEXT_MAX
        assert error.startswith("redirect to https://example.com/aaa")
        assert error.endswith("characters in all]")
    logged = [r.getMessage() for r in caplog.records if r.name == "trackbook.delivery.worker"]
    assert logged
    assert all(len(message) < 2 * ERROR_TEXT_MAX for message in logged)


async def test_retries_count_per_step_not_per_run(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    receiver: WebhookReceiver,
    clock: ManualClock,
) -> None:
    clock.set(clock.now())
    first = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    second = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    automation_id = await create_automation(
        client,
        tenant,
        name="Two hooks",
        trigger={"event": "order"},
        actions=[
            {"type": "webhook", "webhook_id": first.json()["id"]},
            {"type": "webhook", "webhook_id": second.json()["id"]},
        ],
    )
    receiver.answers = [500, 500, 200, 500]  # settings allow 3 attempts a step
    await track(client, tenant, "order", "steps@example.com")
    for wait in (0, 61, 121):
        clock.advance(timedelta(seconds=wait))
        await drain(services)
    [run] = await runs_of(client, tenant, automation_id)
    # the first hook took 3 attempts and succeeded; the second failed once: 1 attempt
    assert (run["status"], run["step"], run["attempts"]) == ("pending", 1, 1)


async def test_a_track_action_that_would_loop_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create_automation(
        client,
        tenant,
        name="Ping",
        trigger={"event": "ping"},
        actions=[{"type": "track", "event": "pong"}],
    )
    refused = await client.post(
        "/v1/automations",
        headers=tenant.headers,
        json={
            "name": "Pong",
            "trigger": {"event": "pong"},
            "actions": [{"type": "track", "event": "ping"}],
        },
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "actions.0.event"
    assert "pong -> ping -> pong" in refused.json()["error"]["message"]


def _warnings(caplog: pytest.LogCaptureFixture, **about: object) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "trackbook.delivery.worker"
        and record.levelno == logging.WARNING
        and all(getattr(record, name, None) == value for name, value in about.items())
    ]


async def test_a_refused_target_and_the_run_it_fails_are_logged_with_their_ids(
    settings: Settings,
    clock: ManualClock,
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
    client: httpx.AsyncClient,
) -> None:
    # registered where private targets are allowed, sent where they no longer are (a
    # setting turned off, or a name that now resolves to a private address)
    allowing = client
    refusing = create_app(settings.model_copy(update={"webhook_allow_private": False}), clock=clock)
    async with (
        LifespanManager(refusing),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=refusing), base_url="http://trackbook.test"
        ) as through_refusing,
    ):
        services: Services = refusing.state.services
        tenant = await make_tenant(services)
        hook = await allowing.post(
            "/v1/webhooks", headers=tenant.headers, json={"url": receiver.url}
        )
        endpoint_id = hook.json()["id"]
        automation_id = await create_automation(
            through_refusing,
            tenant,
            name="To a loopback hook",
            trigger={"event": "order"},
            actions=[{"type": "webhook", "webhook_id": endpoint_id}],
        )
        await track(through_refusing, tenant, "order", "refused@example.com")
        caplog.set_level(logging.INFO, logger="trackbook.delivery.worker")
        await drain(services)
        [run] = await runs_of(through_refusing, tenant, automation_id)

    assert receiver.received == []
    assert run["status"] == "failed"
    assert "TRACKBOOK_WEBHOOK_ALLOW_PRIVATE" in run["error"]
    [refused] = _warnings(caplog, webhook_endpoint_id=endpoint_id)
    assert refused.run_id == run["id"]
    assert "TRACKBOOK_WEBHOOK_ALLOW_PRIVATE" in refused.reason
    assert "TRACKBOOK_WEBHOOK_ALLOW_PRIVATE" in refused.getMessage()
    [failed] = _warnings(caplog, automation_id=automation_id)
    assert failed.run_id == run["id"]
    assert failed.step == 0
    assert "TRACKBOOK_WEBHOOK_ALLOW_PRIVATE" in failed.reason


async def test_a_run_whose_step_fails_every_attempt_is_logged_when_it_gives_up(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    receiver: WebhookReceiver,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock.set(clock.now())
    hook = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    endpoint_id = hook.json()["id"]
    automation_id = await create_automation(
        client,
        tenant,
        name="Down hook",
        trigger={"event": "order"},
        actions=[
            {"type": "add_tag", "tag": "buyer"},
            {"type": "webhook", "webhook_id": endpoint_id},
        ],
    )
    receiver.answers = [503, 503, 503]  # settings allow 3 attempts a step
    await track(client, tenant, "order", "down@example.com")
    caplog.set_level(logging.INFO, logger="trackbook.delivery.worker")
    await drain(services)
    # retried while attempts remain: said, not warned
    assert _warnings(caplog) == []
    retried = [r for r in caplog.records if getattr(r, "automation_id", None) == automation_id]
    assert [(r.levelno, r.attempts) for r in retried] == [(logging.INFO, 1)]
    for wait in (61, 121):
        clock.advance(timedelta(seconds=wait))
        await drain(services)
    [run] = await runs_of(client, tenant, automation_id)
    assert run["status"] == "failed"
    assert len(receiver.received) == 3

    [failed] = _warnings(caplog, automation_id=automation_id)
    assert (failed.run_id, failed.step, failed.attempts) == (run["id"], 1, 3)
    assert failed.reason == "HTTP 503"
    [gave_up] = _warnings(caplog, webhook_endpoint_id=endpoint_id)
    assert (gave_up.run_id, gave_up.attempts, gave_up.reason) == (run["id"], 3, "HTTP 503")
