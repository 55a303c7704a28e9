"""Sending email over SMTP (aiosmtplib), as the automations' email action does."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from trackbook.settings import Settings


class EmailNotConfigured(Exception):
    """No SMTP server is set (TRACKBOOK_SMTP_URL); a retry cannot help."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def build_message(
    *, sender: str, to: str, subject: str, text: str | None, html: str | None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="trackbook")
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html or "", subtype="html")
    return message


class SmtpMailer:
    """smtp://user:password@host:port uses STARTTLS when the server offers it (or
    always, or never, per TRACKBOOK_SMTP_STARTTLS); smtps:// speaks TLS from the start."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, message: EmailMessage) -> None:
        settings = self._settings
        if settings.smtp_url is None:
            raise EmailNotConfigured("no SMTP server is configured (TRACKBOOK_SMTP_URL)")
        url = urlsplit(settings.smtp_url)
        implicit_tls = url.scheme == "smtps"
        context = ssl.create_default_context()
        if not settings.smtp_verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        start_tls: bool | None = {"auto": None, "required": True, "off": False}[
            settings.smtp_starttls
        ]
        await aiosmtplib.send(
            message,
            hostname=url.hostname or "localhost",
            port=url.port or (465 if implicit_tls else 25),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=implicit_tls,
            start_tls=None if implicit_tls else start_tls,
            tls_context=context,
            timeout=settings.smtp_timeout_seconds,
        )
