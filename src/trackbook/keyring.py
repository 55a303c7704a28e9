"""The server key that seals secrets Trackbook must read back (webhook signing secrets),
so that a copy of the database alone does not give them away.

API keys are only ever hashed; a webhook secret has to sign every delivery, so it is
encrypted with Fernet (AES-128-CBC + HMAC-SHA256) instead. Several keys may be given:
the first seals, all of them open, which is how the server key is rotated.
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.db.tables import accounts
from trackbook.settings import Settings

log = logging.getLogger(__name__)

SEALED_MARKER = "sealed:"


def same_secret(given: str, held: str) -> bool:
    """A constant-time comparison of a presented secret with the one held. On text,
    `hmac.compare_digest` raises TypeError for anything but ASCII, so a hostile key or
    form token was a 500; compared as UTF-8 bytes it is simply not equal."""
    return hmac.compare_digest(given.encode(), held.encode())


class KeyringError(Exception):
    """The server key is missing, malformed or not the one a secret was sealed with."""


OPENED_REMEMBERED = 1024
"""Opened secrets kept in memory, by their sealed text (a rotated secret is new text)."""


class Keyring:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise KeyringError("at least one server key is needed")
        try:
            self._fernet = MultiFernet([Fernet(key.encode("ascii")) for key in keys])
        except (ValueError, UnicodeEncodeError):
            raise KeyringError(
                "a server key must be 32 url-safe base64-encoded bytes "
                "(make one with `trackbook server-key`)"
            ) from None
        # trackcmp opens its account's event key on every request: a decrypt (HMAC and
        # AES) each time cost more than the rest of the check
        self._opened: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, create: bool = True) -> Keyring:
        """TRACKBOOK_SECRET_KEY when set (comma-separated, newest first); otherwise the
        key file, created on first use unless `create` is false (a database already
        holding sealed secrets needs the key they were sealed with, not a new one)."""
        if settings.secret_key is not None:
            given = settings.secret_key.get_secret_value()
            return cls([key.strip() for key in given.split(",") if key.strip()])
        return cls([_key_from_file(Path(settings.secret_key_file), create=create)])

    def seal(self, secret: str) -> str:
        return SEALED_MARKER + self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret a sealed value holds. A value stored before sealing existed is
        returned as it is; `seal_stored_secrets` seals those at start-up."""
        if not is_sealed(stored):
            return stored
        opened = self._opened.get(stored)
        if opened is not None:
            return opened
        try:
            token = stored.removeprefix(SEALED_MARKER).encode("ascii")
            opened = self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            raise KeyringError(
                "a stored secret was sealed with another server key; "
                "set TRACKBOOK_SECRET_KEY to the key (or keys) it was sealed with"
            ) from None
        if len(self._opened) >= OPENED_REMEMBERED:
            self._opened.clear()
        self._opened[stored] = opened
        return opened


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_MARKER)


async def seal_stored(conn: AsyncConnection, column: sa.Column[str], keyring: Keyring) -> int:
    """Seals the values of `column` stored in plaintext before sealing existed, in every
    account (a start-up task, like the partitions); how many it sealed."""
    table = column.table
    rows = (
        await conn.execute(
            sa.select(table.c.id, column).where(column.not_like(SEALED_MARKER + "%"))
        )
    ).all()
    for row_id, plaintext in rows:
        await conn.execute(
            table.update()
            .where(table.c.id == row_id)
            .values({column.name: keyring.seal(plaintext)})
        )
    return len(rows)


async def sealed_sample(conn: AsyncConnection) -> str | None:
    """One secret the database holds sealed, of any account, or None: what a server key
    must open before a process uses it (a check of the whole install, like sealing)."""
    return await conn.scalar(
        sa.select(accounts.c.event_key)
        .where(accounts.c.event_key.like(SEALED_MARKER + "%"))
        .limit(1)
    )


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _key_from_file(path: Path, *, create: bool) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            raise KeyringError(
                f"there is no server key at {path.absolute()}, and the database holds "
                "secrets sealed with one: run Trackbook where its key file is, or point "
                "TRACKBOOK_SECRET_KEY_FILE (or TRACKBOOK_SECRET_KEY) at it"
            ) from None
    key = new_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(key + "\n")
    try:
        # a link is made whole or not at all: of two processes starting at once, the
        # one that links first wins and the other reads its key
        os.link(draft, path)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    finally:
        draft.unlink()
    log.warning(
        "created the server key %s: keep it with your backups; every node of one "
        "install needs the same key (TRACKBOOK_SECRET_KEY)",
        path,
    )
    return key
