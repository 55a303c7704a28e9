"""Dashboard users of an account (argon2 password hashes) and their sessions."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.contacts.identity import normalise_email
from trackbook.db.tables import dashboard_sessions, dashboard_users
from trackbook.errors import Conflict, Invalid, NotFound

SESSION_LIFETIME = timedelta(days=14)
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# verified against when the email is unknown, so that both cases take as long
_DUMMY_HASH = _hasher.hash("not a password of anyone")
# threads of its own: sign-in must not wait behind whatever fills the default pool,
# and a flood of sign-ins (64 MB and tens of milliseconds each) queues here alone
_hashing = ThreadPoolExecutor(2, thread_name_prefix="trackbook-argon2")
_T = TypeVar("_T")


async def _hashed(work: Callable[..., _T], *args: str) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, work, *args)


class UserNotFound(NotFound):
    code = "user_not_found"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    account_id: int
    email: str
    created_at: datetime
    last_sign_in_at: datetime | None


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str


def _user(row: sa.Row[Any]) -> User:
    return User(row.id, row.account_id, row.email, row.created_at, row.last_sign_in_at)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_password() -> str:
    return secrets.token_urlsafe(15)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Invalid("password", f"must be at least {MIN_PASSWORD} characters")
    return password


async def create_user(
    conn: AsyncConnection, account_id: int, email: str, password: str, *, now: datetime
) -> User:
    email = normalise_email(email)
    password_hash = await _hashed(_hasher.hash, check_password(password))
    exists = await conn.scalar(
        sa.select(dashboard_users.c.id).where(
            dashboard_users.c.account_id == account_id, dashboard_users.c.email == email
        )
    )
    if exists is not None:
        raise Conflict(f"{email} is already a user of account {account_id}")
    user_id = await conn.scalar(
        sa.insert(dashboard_users)
        .values(account_id=account_id, email=email, password_hash=password_hash, created_at=now)
        .returning(dashboard_users.c.id)
    )
    assert user_id is not None  # noqa: S101 - RETURNING of an insert
    return User(user_id, account_id, email, now, None)


async def list_users(conn: AsyncConnection, account_id: int) -> list[User]:
    rows = await conn.execute(
        sa.select(dashboard_users)
        .where(dashboard_users.c.account_id == account_id)
        .order_by(dashboard_users.c.email)
    )
    return [_user(row) for row in rows]


async def delete_user(conn: AsyncConnection, account_id: int, user_id: int) -> None:
    deleted = await conn.execute(
        dashboard_users.delete().where(
            dashboard_users.c.account_id == account_id, dashboard_users.c.id == user_id
        )
    )
    if not deleted.rowcount:
        raise UserNotFound(f"user {user_id} does not exist")


async def sign_in(
    conn: AsyncConnection, email: str, password: str, *, now: datetime
) -> tuple[str, Session] | None:
    """A new session token for the user with this email and password, or None. An email
    may be a user of several accounts: the first whose password matches signs in."""
    try:
        email = normalise_email(email)
    except Invalid:
        return None
    rows = (
        await conn.execute(
            sa.select(dashboard_users)
            .where(dashboard_users.c.email == email)
            .order_by(dashboard_users.c.id)
        )
    ).all()
    matched = None
    for row in rows:
        if await _hashed(_verify, row.password_hash, password):
            matched = row
            break
    if not rows:
        await _hashed(_verify, _DUMMY_HASH, password)
    if matched is None:
        return None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    cookie = f"{matched.account_id}.{token}"
    await conn.execute(
        sa.insert(dashboard_sessions).values(
            account_id=matched.account_id,
            user_id=matched.id,
            token_hash=_token_hash(token),
            csrf_token=csrf,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    await conn.execute(
        dashboard_users.update()
        .where(
            dashboard_users.c.account_id == matched.account_id, dashboard_users.c.id == matched.id
        )
        .values(last_sign_in_at=now)
    )
    return cookie, Session(_user(matched), csrf)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _parse(cookie: str) -> tuple[int, str] | None:
    account, _, token = cookie.partition(".")
    valid = account.isascii() and account.isdigit() and len(account) < 19 and token
    return (int(account), token) if valid else None


async def session_of(conn: AsyncConnection, cookie: str, *, now: datetime) -> Session | None:
    """The live session a cookie (account id, a dot, the token) names, or None."""
    parsed = _parse(cookie)
    if parsed is None:
        return None
    account_id, token = parsed
    row = (
        await conn.execute(
            sa.select(dashboard_users, dashboard_sessions.c.csrf_token)
            .join(dashboard_sessions, dashboard_sessions.c.user_id == dashboard_users.c.id)
            .where(
                dashboard_sessions.c.account_id == account_id,
                dashboard_sessions.c.token_hash == _token_hash(token),
                dashboard_sessions.c.expires_at > now,
            )
        )
    ).one_or_none()
    return None if row is None else Session(_user(row), row.csrf_token)


async def sign_out(conn: AsyncConnection, cookie: str) -> None:
    parsed = _parse(cookie)
    if parsed is not None:
        await conn.execute(
            dashboard_sessions.delete().where(
                dashboard_sessions.c.account_id == parsed[0],
                dashboard_sessions.c.token_hash == _token_hash(parsed[1]),
            )
        )
