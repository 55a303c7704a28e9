"""A tenant's email template is hostile input: bounded in time and memory, rendered in
child processes that are killed at the deadline, and never on the event loop."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.automations.conftest import Mailbox, drain
from tests.automations.test_end_to_end import create_automation, runs_of
from tests.conftest import TenantFactory
from tests.support import Tenant
from trackbook.accounts import users
from trackbook.delivery.guard import resolve
from trackbook.delivery.personalise import RenderError, events_named
from trackbook.delivery.renderer import Renderer
from trackbook.delivery.worker import CLAIM_BATCH
from trackbook.errors import ERROR_TEXT_MAX
from trackbook.services import Services

PASSWORD = "correct horse battery"
SPACES = " " * 4_000
GROWING = "{% set text = 'x' * 10000 %}" + "{% set text = text ~ text %}" * 16 + "{{ text }}"
NESTED_LOOPS = (
    "{% set letters = 'x' * 10000 %}"
    "{% for a in letters %}{% for b in letters %}{% for c in letters %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)
# a KeyError whose message is its 10 MB key
HUGE_KEY_ERROR = '{% set s = "x" * 10000 %}' + "{% set s = s ~ s %}" * 10 + "{{ {}.pop(s) }}"
CONTEXT = {
    "contact": {"email": "a@example.com", "first_name": "Ada", "last_name": None},
    "event": {"name": "signup", "properties": {}},
}


def renderer_children() -> Iterator[int]:
    """The renderer processes this process has started and that are still alive."""
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rpartition(")")[2].split()
            command = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue  # gone while listed
        if int(fields[1]) == os.getpid() and b"trackbook.delivery.renderer" in command:
            yield int(status.parent.name)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Polls `condition` for up to 30 s."""
    try:
        async with asyncio.timeout(30):
            while not condition():  # noqa: ASYNC110 - /proc offers no event to wait on
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"waited 30 s for {what}") from None


async def email_automation(
    client: httpx.AsyncClient, tenant: Tenant, text: str, trigger: str = "signup"
) -> int:
    return await create_automation(
        client,
        tenant,
        name=f"Mail on {trigger}",
        trigger={"event": trigger},
        actions=[{"type": "email", "subject": "Hello %FIRSTNAME%", "text": text}],
    )


async def track(client: httpx.AsyncClient, tenant: Tenant, email: str) -> None:
    tracked = await client.post(
        "/v1/track",
        headers=tenant.headers,
        json={"event": "signup", "contact": {"email": email}},
    )
    assert tracked.status_code == 201, tracked.text


async def test_tags_are_found_in_a_megabyte_of_pathological_text() -> None:
    # Python's re took 86 s on 4,000 spaces, and grew with their cube
    pathological = "%EVENT:" + " " * 1_000_000
    assert events_named(pathological) == set()
    assert events_named(pathological + "Signup %") == {"signup"}
    assert events_named("%event:  File Download %, %Event:%, %EVENT:   %") == {"file download"}
    renderer = Renderer()
    try:
        rendered = await renderer.render(
            "%EVENT:" + " " * 900_000 + "{{ contact.email }}",
            context=CONTEXT,
            latest_values={},
        )
    finally:
        await renderer.close()
    assert rendered.endswith(" a@example.com")


async def test_a_tag_of_4000_spaces_is_sent_as_written_while_the_loop_goes_on(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    text = f"Your code: %EVENT:{SPACES}and %FIRSTNAME%, %EVENT:{SPACES}"
    automation_id = await email_automation(client, tenant, text)
    await track(client, tenant, "spaces@example.com")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        async with asyncio.timeout(60):  # a frozen loop took 86 s
            await drain(services)
    finally:
        ticker.cancel()
    [message] = box.messages
    # `%EVENT:    and %` names the event "and", which the contact never had
    assert message.get_content().rstrip("\r\n") == f"Your code: FIRSTNAME%, %EVENT:{SPACES}"
    assert [run["status"] for run in await runs_of(client, tenant, automation_id)] == ["done"]
    assert ticks > 0


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ 'a'.ljust(400000000) }}", "widths above 10000 are not allowed"),
        ("{% for x in 'a'.ljust(100000000) %}x{% endfor %}", "widths above 10000 are not allowed"),
        ("{{ '%400000000s' % 'a' }}", "widths above 10000 are not allowed"),
        ("{{ '{:>400000000}'.format('a') }}", "widths above 10000 are not allowed"),
        ("{{ 'a'|center(400000000) }}", "widths above 10000 are not allowed"),
        ("{{ ('x' * 10000).replace('x', 'x' * 10000) }}", "longer than 1000000 characters"),
        (GROWING, "the template needs more than 256 MB of memory"),
    ],
    ids=["ljust", "for-ljust", "printf-width", "format-width", "center", "replace", "doubling"],
)
async def test_a_template_that_grows_without_bound_fails_its_step_with_the_reason(
    client: httpx.AsyncClient,
    tenant: Tenant,
    services: Services,
    mailbox: tuple[Mailbox, int],
    template: str,
    reason: str,
) -> None:
    box, _ = mailbox
    automation_id = await email_automation(client, tenant, template)
    await track(client, tenant, "grows@example.com")
    await drain(services)
    [run] = await runs_of(client, tenant, automation_id)
    assert run["status"] == "failed"
    assert reason in run["error"]
    assert box.messages == []
    if "memory" in reason:
        # the child that ran out of memory is not used again, and is gone
        assert list(renderer_children()) == []


async def test_the_renderer_answers_a_bounded_error_whatever_the_template_raises() -> None:
    renderer = Renderer()
    try:
        with pytest.raises(RenderError) as raised:
            await renderer.render(HUGE_KEY_ERROR, context=CONTEXT, latest_values={})
    finally:
        await renderer.close()
    message = str(raised.value)
    assert len(message) <= ERROR_TEXT_MAX
    assert message.startswith("the template cannot be rendered: 'xxx")
    assert message.endswith("[cut: 10240035 characters in all]")


async def test_a_huge_render_error_is_kept_and_answered_bounded(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    automation_id = await email_automation(client, tenant, HUGE_KEY_ERROR)
    for number in range(3):
        await track(client, tenant, f"huge{number}@example.com")
    await drain(services)
    runs = await client.get(f"/v1/automations/{automation_id}/runs", headers=tenant.headers)
    assert len(runs.content) < 3 * 2 * ERROR_TEXT_MAX  # not 3 keys of 10 MB
    assert [run["status"] for run in runs.json()["data"]] == ["failed"] * 3
    for run in runs.json()["data"]:
        assert len(run["error"]) <= ERROR_TEXT_MAX
        assert run["error"].startswith("the template cannot be rendered: 'xxx")
        assert "characters in all]" in run["error"]
    assert box.messages == []


async def test_a_render_past_its_deadline_is_killed_while_sign_in_and_dns_go_on(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    email = "owner@example.com"
    await services.db.write(users.create_user, tenant.id, email, PASSWORD, now=services.clock.now())
    automation_id = await email_automation(client, tenant, NESTED_LOOPS)
    for number in range(2):  # as many as there are renderer processes: both are busy
        await track(client, tenant, f"loops{number}@example.com")
    working = asyncio.create_task(drain(services))
    await until(lambda: len(list(renderer_children())) == 2, "both renderers to be busy")

    form = await client.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    signed_in = await client.post(
        "/signin", data={"csrf": csrf[1], "next": "/", "email": email, "password": PASSWORD}
    )
    address = await resolve(httpx.URL("http://localhost/"), allow_private=True)
    assert not working.done()  # both renders were still running throughout
    assert signed_in.status_code == 303, signed_in.text
    assert address.is_loopback

    await working
    runs = await runs_of(client, tenant, automation_id)
    assert [run["status"] for run in runs] == ["failed", "failed"]
    for run in runs:
        assert "the template took over 5 s to render; it was stopped" in run["error"]
    assert list(renderer_children()) == []
    assert box.messages == []


async def test_one_accounts_slow_templates_do_not_hold_up_anothers_email(
    client: httpx.AsyncClient,
    new_tenant: TenantFactory,
    services: Services,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, _ = mailbox
    slow, quick = await new_tenant("Slow"), await new_tenant("Quick")
    slow_automation = await email_automation(client, slow, NESTED_LOOPS)
    quick_automation = await email_automation(client, quick, "Welcome, %FIRSTNAME%")
    for number in range(CLAIM_BATCH):  # a whole batch, due before the quick one
        await track(client, slow, f"slow{number}@example.com")
    await track(client, quick, "quick@example.com")

    await services.worker.run_once()  # one round
    assert [run["status"] for run in await runs_of(client, quick, quick_automation)] == ["done"]
    assert [message["To"] for message in box.messages] == ["quick@example.com"]
    slow_runs = await runs_of(client, slow, slow_automation)
    failed = [run for run in slow_runs if run["status"] == "failed"]
    # the slow account rendered on the renderers the quick one left idle: one or two,
    # as the two accounts came to them; the others wait, untried, for the next round
    assert 1 <= len(failed) <= 2
    for run in failed:
        assert "the template took over 5 s to render" in run["error"]
    waiting = [run for run in slow_runs if run not in failed]
    assert {(run["status"], run["attempts"], run["error"]) for run in waiting} == {
        ("pending", 0, None)
    }

    await services.worker.run_once()  # the next round takes the slow account's next
    slow_runs = await runs_of(client, slow, slow_automation)
    assert 2 <= sum(run["status"] == "failed" for run in slow_runs) <= 4


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{{ contact" + "[0]" * 25_000 + " }}", "more than 20000 Jinja2 tokens"),
        ("{{ " + "(" * 5_000 + "1" + ")" * 5_000 + " }}", "nests too deeply"),
        ("{% if 1 %}" * 500 + "{% endif %}" * 500, "nests too deeply"),
    ],
    ids=["tokens", "parentheses", "blocks"],
)
async def test_a_template_too_large_to_check_is_refused_when_saved(
    client: httpx.AsyncClient, tenant: Tenant, text: str, reason: str
) -> None:
    assert len(text) <= 100_000  # within the bound on characters
    response = await client.post(
        "/v1/automations",
        headers=tenant.headers,
        json={
            "name": "Too large",
            "trigger": {"event": "signup"},
            "actions": [{"type": "email", "subject": "Hi", "text": text}],
        },
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["field"] == "actions.0.text"
    assert reason in error["message"]
