"""Real receivers for what automations send: an HTTP server for webhooks, an SMTP
server (aiosmtpd) for email; and a way to let the worker finish what is due."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.requests import Request
from starlette.responses import Response

from tests.support import SERVER_KEY, UNLIMITED, free_port
from trackbook.services import Services
from trackbook.settings import Settings


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """Answers each POST with the next of `answers` (then 200) and records it."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hold: asyncio.Event | None = None
    """While set to an unset event, requests are recorded but not answered."""
    answer_headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body = await request.body()
        self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        status = self.answers.pop(0) if self.answers else 200
        await Response(status_code=status, headers=self.answer_headers)(scope, receive, send)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver(port=free_port())
    server = uvicorn.Server(
        uvicorn.Config(hook, host="127.0.0.1", port=hook.port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    yield hook
    server.should_exit = True
    await serving


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content
        assert isinstance(content, bytes)
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture
def settings(database_url: str, mailbox: tuple[Mailbox, int]) -> Settings:
    return Settings(
        database_url=database_url,
        worker_in_process=False,
        webhook_allow_private=True,
        smtp_url=f"smtp://127.0.0.1:{mailbox[1]}",
        smtp_from="Trackbook Tests <tests@trackbook.test>",
        worker_max_attempts=3,
        worker_backoff_seconds=60,
        secret_key=SERVER_KEY,
        **UNLIMITED,
    )


async def drain(services: Services) -> None:
    """Lets the worker carry out everything due now, as a poll with a bound."""
    for _ in range(50):
        if not await services.worker.run_once():
            return
    raise AssertionError("the worker kept finding work")
