"""Events sent through the real dialects start automations that really send."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.automations.conftest import Mailbox, WebhookReceiver, drain
from tests.support import ManualClock, Tenant
from trackbook.accounts import service as accounts
from trackbook.services import Services

FLUENT = "/wp-json/fluent-crm/v2"


async def create_automation(client: httpx.AsyncClient, tenant: Tenant, **body: object) -> int:
    response = await client.post("/v1/automations", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    automation_id: int = response.json()["id"]
    return automation_id


async def runs_of(client: httpx.AsyncClient, tenant: Tenant, automation_id: int) -> list[dict]:
    response = await client.get(f"/v1/automations/{automation_id}/runs", headers=tenant.headers)
    assert response.status_code == 200, response.text
    runs: list[dict] = response.json()["data"]
    return runs


async def test_trackcmp_event_mails_its_eventdata_in_place_of_the_event_tag(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, _ = mailbox
    contact = await client.post(
        "/v1/contacts",
        headers=tenant.headers,
        json={"email": "reader@example.com", "first_name": "Ada"},
    )
    assert contact.status_code in (200, 201), contact.text
    automation_id = await create_automation(
        client,
        tenant,
        name="Send the download link",
        trigger={"event": "file download request"},
        actions=[
            {
                "type": "email",
                "subject": "Your file, %FIRSTNAME%",
                "text": "Hello %FIRSTNAME%, here it is: %EVENT: file download request%\n"
                "Unknown: %NOSUCHTAG% {{ event.properties.nope }}",
                "html": "<p>Download <a href='%EVENT: file download request%'>it</a></p>",
            }
        ],
    )
    account = await services.db.query(accounts.get_account, tenant.id)
    link = "https://www.yoursite.com/downloads/file.pdf?a=1&b=2"
    spawned = await client.post(
        "/event",
        data={
            "actid": account.actid,
            "key": services.keyring.open(account.sealed_event_key),
            "event": "file download request",
            "eventdata": link,
            "visit[email]": "reader@example.com",
        },
    )
    assert spawned.json() == {"success": 1, "message": "Event spawned"}
    assert box.messages == []  # nothing is sent inside the request
    await drain(services)

    [message] = box.messages
    assert box.recipients == [["reader@example.com"]]
    assert message["Subject"] == "Your file, Ada"
    assert message["From"] == "Trackbook Tests <tests@trackbook.test>"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    plain = text.get_content()
    assert f"here it is: {link}" in plain
    assert "Unknown: %NOSUCHTAG% {{" in plain  # left visible, not a crash
    assert "href='https://www.yoursite.com/downloads/file.pdf?a=1&amp;b=2'" in html.get_content()
    [run] = await runs_of(client, tenant, automation_id)
    assert (run["status"], run["error"], run["attempts"]) == ("done", None, 0)


async def test_three_fluentcrm_tracks_with_minimum_count_three_fire_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    receiver: WebhookReceiver,
) -> None:
    hook = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    automation_id = await create_automation(
        client,
        tenant,
        name="Third visit",
        trigger={"event": "pricing_visit"},
        conditions={"min_count": 3},
        frequency="every_time",
        actions=[{"type": "webhook", "webhook_id": hook.json()["id"]}],
    )
    auth = ("wp", tenant.key)
    created = await client.post(f"{FLUENT}/subscribers", auth=auth, json={"email": "f@example.com"})
    subscriber_id = created.json()["contact"]["id"]
    for _ in range(3):
        tracked = await client.post(
            f"{FLUENT}/subscribers/track-event",
            auth=auth,
            json={"subscriber_id": subscriber_id, "event_key": "pricing_visit", "title": "Pricing"},
        )
        assert tracked.status_code == 200, tracked.text
        await drain(services)
    assert len(receiver.received) == 1
    [run] = await runs_of(client, tenant, automation_id)
    assert run["status"] == "done"


async def test_octeth_conversion_fires_a_webhook_whose_signature_verifies(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    receiver: WebhookReceiver,
) -> None:
    hook = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    assert secret.startswith("whsec_")
    shown = await client.get(f"/v1/webhooks/{hook.json()['id']}", headers=tenant.headers)
    assert "secret" not in shown.json()
    await create_automation(
        client,
        tenant,
        name="Big order",
        trigger={"event": "conversion"},
        conditions={"match": [{"property": {"path": "conversion-value", "op": ">", "value": 40}}]},
        actions=[{"type": "webhook", "webhook_id": hook.json()["id"]}],
    )
    for value in (10, 49.9):
        tracked = await client.post(
            "/api/v1/event",
            json={
                "APIKey": tenant.key,
                "Event": "conversion",
                "Email": "buyer@example.com",
                "Properties": {
                    "conversion-id": f"order-{value}",
                    "conversion-name": "Order",
                    "conversion-value": value,
                },
            },
        )
        assert tracked.status_code == 200, tracked.text
    await drain(services)

    [delivery] = receiver.received
    payload = Webhook(secret).verify(delivery.body, delivery.headers)
    assert payload["type"] == "automation.webhook"
    assert payload["data"]["event"]["name"] == "conversion"
    assert payload["data"]["event"]["properties"]["conversion-value"] == 49.9
    assert payload["data"]["contact"]["email"] == "buyer@example.com"
    assert delivery.headers["webhook-id"].startswith("msg_")
    tampered = dict(delivery.headers, **{"webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(delivery.body, tampered)


async def test_failed_webhook_is_retried_with_backoff_under_the_same_id_then_fails(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    receiver: WebhookReceiver,
    clock: ManualClock,
) -> None:
    clock.set(clock.now())
    hook = await client.post("/v1/webhooks", headers=tenant.headers, json={"url": receiver.url})
    automation_id = await create_automation(
        client,
        tenant,
        name="Flaky receiver",
        trigger={"event": "signup"},
        actions=[{"type": "webhook", "webhook_id": hook.json()["id"]}],
    )
    receiver.answers = [500, 503, 500]  # settings allow 3 attempts
    await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "signup", "contact": {"email": "flaky@example.com"}},
    )
    await drain(services)
    [run] = await runs_of(client, tenant, automation_id)
    assert (run["status"], run["attempts"], run["error"]) == ("pending", 1, "HTTP 500")
    await drain(services)  # not due before the backoff has passed
    assert len(receiver.received) == 1
    clock.advance(timedelta(seconds=61))
    await drain(services)
    clock.advance(timedelta(seconds=121))
    await drain(services)
    [run] = await runs_of(client, tenant, automation_id)
    assert (run["status"], run["attempts"], run["error"]) == ("failed", 3, "HTTP 500")
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len(receiver.received) == 3
    deliveries = await client.get(
        f"/v1/webhooks/{hook.json()['id']}/deliveries", headers=tenant.headers
    )
    [delivery] = deliveries.json()["data"]
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 500]
